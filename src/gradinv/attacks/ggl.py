"""GGL: generative gradient leakage (Li, Han, Chen & Rekatsinas, CVPR 2022)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import GradinvError
from ..fl import Observation
from ..options import option
from .base import ATTACKS, Attack, Reconstruction
from .engine import Objective, Problem
from .engine.generative import Latent, load_prior_generator


@ATTACKS.register(
    "ggl", "GGL (Li et al. 2022): gradient-free CMA-ES search of a generator's latent"
)
@dataclass
class GGL(Attack):
    """Only the latent z of a fixed trained generator is searched, without gradients: CMA-ES
    (the `cma` package) proposes a population of latents per generation, each scored by its
    gradient distance plus a KL term keeping z close to N(0, I); a whole population is scored in
    one batched evaluation. Works against defenses that break gradient-based search.

    Example::

        obs = observe(model, images, labels, share_labels=True)
        rec = GGL(generator="runs/gen-fmnist", generations=200).reconstruct(obs)
        print(evaluate(rec.images, images)["psnr"])
    """

    name = "ggl"
    contract_options = {"generator": "untrained", "generations": 3, "population": 6}
    generator: str = option("", "generator directory (gradinv train-generator), or untrained")
    generations: int = option(200, "CMA-ES generations", low=1)
    population: int = option(32, "CMA-ES population size", low=4)
    sigma: float = option(0.5, "CMA-ES initial step size", low=0, low_open=True)
    kl: float = option(0.01, "weight of KL(z ‖ N(0, I)) per image", low=0)
    distance: str = option("cosine", "gradient distance: l2, cosine, l1, l2-layers")
    label_strategy: str = option("auto", "label strategy when the labels are not observed")
    num_snapshots: int = option(40, "images kept along the way for the progress animation", low=1)
    defense_aware: bool = option(
        False, "re-apply the recorded defenses' deterministic part to the simulated update",
    )  # fmt: skip

    def reconstruct(self, observation: Observation) -> Reconstruction:
        self.check()
        observation.validate()
        try:
            import cma
        except ImportError:
            raise GradinvError("ggl needs the `cma` package: pip install cma") from None
        if self.label_strategy == "joint":
            raise GradinvError("ggl searches images only: use observed or recovered labels")
        obs = observation
        problem = Problem.build(obs, self.label_strategy, defense_aware=self.defense_aware)
        generator = load_prior_generator(self.generator, obs, self.seed)
        b, d = problem.batch_size, generator.latent_dim
        latent = Latent(obs, generator, b)
        objective = Objective(problem.simulator, b, self.distance)
        options = {"popsize": self.population, "seed": self.seed + 1, "verbose": -9,
                   "maxiter": self.generations}  # fmt: skip
        es = cma.CMAEvolutionStrategy(np.zeros(b * d), self.sigma, options)
        history: list[float] = []
        snapshots: list[tuple[int, torch.Tensor]] = []
        every = max(1, self.generations // self.num_snapshots)
        interrupted = False
        bar = tqdm(total=self.generations, desc=self.name, disable=not self.progress, leave=False)

        def score(candidates: np.ndarray) -> np.ndarray:
            z = torch.as_tensor(candidates, dtype=obs.dtype, device=obs.device).reshape(-1, b, d)
            with torch.no_grad():
                distance = objective.matching(latent.inputs([z]), problem.labels)
            mu, var = z.mean(-1), z.var(-1, unbiased=False).clamp_min(1e-12)
            kl = 0.5 * (var + mu.pow(2) - 1 - var.log()).sum(-1)
            values = (distance + self.kl * kl).double().cpu().numpy()
            return np.where(np.isfinite(values), values, np.inf)

        try:
            for generation in range(self.generations):
                candidates = np.asarray(es.ask())
                values = score(candidates)
                es.tell(list(candidates), values.tolist())
                history.append(float(values.min()))
                if generation % every == 0 or generation == self.generations - 1:
                    snapshots.append((generation, self._images(latent, problem, es.mean, b, d)))
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]:.4g}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
        best = es.result.xbest if es.result.xbest is not None else es.mean
        images = self._images(latent, problem, best, b, d)
        z = torch.as_tensor(best, dtype=obs.dtype, device=obs.device).reshape(1, b, d)
        with torch.no_grad():
            final = float(objective.matching(latent.inputs([z]), problem.labels)[0])
        return Reconstruction(
            images=images,
            labels=problem.labels.detach().cpu(),
            loss_history=history,
            snapshots=snapshots,
            info={
                "final_loss": final if math.isfinite(final) else None,
                "batch_size": b,
                "generations": len(history),
                "interrupted": interrupted,
                "labels_source": problem.labels_source,
            },  # fmt: skip
        )

    @staticmethod
    def _images(latent: Latent, problem: Problem, z: np.ndarray, b: int, d: int) -> torch.Tensor:
        obs = problem.observation
        t = torch.as_tensor(np.asarray(z), dtype=obs.dtype, device=obs.device).reshape(1, b, d)
        with torch.no_grad():
            return problem.to_images(latent.inputs([t])[0])
