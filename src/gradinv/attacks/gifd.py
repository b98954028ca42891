"""GIFD: generative gradient inversion in the feature domain (Fang, Chen, Wang, Chen & Shen,
ICCV 2023)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GradinvError
from ..options import option
from ..priors import Prior, TotalVariation
from .base import ATTACKS
from .engine import Adam, Problem, Trials, lr_multistep, optimise
from .engine.generative import Feature, Latent, load_prior_generator
from .engine.loop import concatenate
from .optimization import OptimizationAttack


@ATTACKS.register(
    "gifd", "GIFD (Fang et al. 2023): layer-by-layer search of a generator's features in l1 balls"
)
@dataclass
class GIFD(OptimizationAttack):
    """Round 0 searches the latent z (renormalised to its initial norm after every step, restarts
    together). Round k ≥ 1 takes the input h_k of stage k that the previous round's result
    produces as the variable, runs stages k..N on it, and after every step projects h_k − h_k⁰
    onto the l1 ball of radius `radius`·‖h_k⁰‖₁ per image (relative radii: absolute ones depend
    on the generator). The loss is the cosine distance (relative to its start) plus a small TV.
    The output is the round whose image has the lowest matching loss.

    Example::

        obs = observe(model, images, labels, share_labels=True)
        rec = GIFD(generator="runs/gen-fmnist").reconstruct(obs)
        print(rec.info["rounds"], evaluate(rec.images, images)["psnr"])
    """

    name = "gifd"
    contract_options = {"generator": "untrained", "iterations": 3, "feature_iterations": 2,
                        "restarts": 2}  # fmt: skip
    generator: str = option("", "generator directory (gradinv train-generator), or untrained")
    iterations: int = option(500, "round 0: Adam steps on the latent", low=1)
    restarts: int = option(4, "round 0: latent trials optimised together", low=1)
    lr: float = option(0.1, "round 0 learning rate (×0.1 at 3/8, 5/8, 7/8)", low=0, low_open=True)
    feature_iterations: int = option(200, "Adam steps in each later round", low=1)
    feature_lr: float = option(0.01, "learning rate of the later rounds", low=0, low_open=True)
    radius: float = option(0.3, "l1-ball radius relative to the feature's l1 norm", low=0)
    stages: int = option(0, "stages searched after the latent (0: all but the output one)", low=0)
    tv: float = option(1e-4, "total-variation weight (relative to the start distance)", low=0)
    relative: bool = option(True, "divide the matching distance by its value at the start")

    def make_priors(self) -> list[Prior]:
        priors = super().make_priors()
        if self.tv:
            priors.append(TotalVariation(weight=self.tv))
        return priors

    def solve(self, problem: Problem) -> Trials:
        obs = problem.observation
        generator = load_prior_generator(self.generator, obs, self.seed)
        n_stages = getattr(generator, "num_stages", 0)
        if n_stages < 2:
            raise GradinvError("gifd needs a generator with stages (see docs/generative.md)")
        last = n_stages - 1 if self.stages == 0 else min(self.stages, n_stages - 1)
        objective = self.objective(problem)
        objective.relative = self.relative
        latent = Latent(obs, generator, problem.batch_size, renormalize=True)
        first = optimise(self.run(problem, schedule=lr_multistep(self.iterations)), latent,
                         objective, lambda: Adam(self.lr))  # fmt: skip
        parts = [(first, first.best)]
        rounds = [{"stage": 0, "matching_loss": float(first.distances[first.best])}]
        with torch.no_grad():
            g = generator.to(obs.device, obs.dtype).eval()
            h = g.features(first.variables[0][first.best], 1)
        for k in range(1, last + 1):
            if parts[-1][0].interrupted:
                break
            feature = Feature(obs, generator, k, h, self.radius)
            run = self.run(problem, self.feature_iterations, trials=1,
                           schedule=lr_multistep(self.feature_iterations))  # fmt: skip
            step = optimise(run, feature, objective, lambda: Adam(self.feature_lr))
            parts.append((step, 0))
            rounds.append({"stage": k, "matching_loss": float(step.distances[0])})
            if k < last:
                with torch.no_grad():
                    h = g.stages[k](step.variables[0][0])
        # the output: the round whose image explains the update best (no ground truth)
        chosen = min(range(len(rounds)), key=lambda i: _finite(rounds[i]["matching_loss"]))
        problem.info["rounds"] = rounds
        problem.info["chosen_stage"] = rounds[chosen]["stage"]
        return concatenate(parts, parts[chosen])


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf
