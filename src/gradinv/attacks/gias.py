"""GIAS: gradient inversion in alternating spaces (Jeon, Kim, Kim, Kim & Ok, NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option
from ..priors import Prior, TotalVariation
from .base import ATTACKS
from .engine import Adam, Problem, Trials, lr_multistep, optimise
from .engine.generative import GeneratorWeights, Latent, latent_norm_term, load_prior_generator
from .engine.loop import concatenate
from .optimization import OptimizationAttack


@ATTACKS.register(
    "gias", "GIAS (Jeon et al. 2021): search a generator's latent, then fine-tune one copy of the "
    "generator per image",
)  # fmt: skip
@dataclass
class GIAS(OptimizationAttack):
    """Stage 1: Adam on the latent z of a trained generator G (one z per image, `restarts` trials
    together, learning rate ×0.1 at 3/8, 5/8 and 7/8, the lowest matching loss kept). Stage 2: z
    frozen, one copy of G per image, all copies optimised jointly against the batch's update — a
    fine-tuned copy can represent images G cannot, starting from G's best guess. The loss is the
    cosine distance (relative to its start) plus a small TV and an optional penalty pulling ‖z‖
    toward √d, where N(0, I) puts its latents. Stage 2's result replaces stage 1's only if it
    explains the update better (matching loss). Pixels stay valid through G's tanh.

    Example::

        obs = observe(model, images, labels, share_labels=True)
        rec = GIAS(generator="runs/gen-fmnist").reconstruct(obs)
        print(evaluate(rec.images, images)["psnr"])
    """

    name = "gias"
    contract_options = {"generator": "untrained", "iterations": 4, "weight_iterations": 3,
                        "restarts": 2}  # fmt: skip
    generator: str = option("", "generator directory (gradinv train-generator), or untrained")
    iterations: int = option(500, "stage 1: Adam steps on the latent", low=1)
    restarts: int = option(4, "stage 1: latent trials optimised together", low=1)
    lr: float = option(0.1, "stage 1 learning rate (×0.1 at 3/8, 5/8, 7/8)", low=0, low_open=True)
    weight_iterations: int = option(500, "stage 2: Adam steps on the per-image weights", low=0)
    weight_lr: float = option(1e-3, "stage 2 learning rate (×0.1 at 3/8, 5/8, 7/8)", low=0,
                              low_open=True)  # fmt: skip
    tv: float = option(1e-4, "total-variation weight (relative to the start distance)", low=0)
    latent_norm: float = option(
        0.0, "stage 1: weight of (‖z‖/√d − 1)² per image (keeps z where G was trained)", low=0,
    )  # fmt: skip
    relative: bool = option(True, "divide the matching distance by its value at the start")

    def make_priors(self) -> list[Prior]:
        priors = super().make_priors()
        if self.tv:
            priors.append(TotalVariation(weight=self.tv))
        return priors

    def solve(self, problem: Problem) -> Trials:
        obs = problem.observation
        generator = load_prior_generator(self.generator, obs, self.seed)
        objective = self.objective(problem)
        objective.relative = self.relative
        latent = Latent(obs, generator, problem.batch_size)
        if self.latent_norm:
            objective.terms = [latent_norm_term(self.latent_norm)]
        first = optimise(self.run(problem, schedule=lr_multistep(self.iterations)), latent,
                         objective, lambda: Adam(self.lr))  # fmt: skip
        if first.interrupted or self.weight_iterations == 0:
            return first
        best = first.best
        z = first.variables[0][best].detach()
        weights = GeneratorWeights(obs, generator, z)
        start = [v.unsqueeze(0) for v in weights.initial(None, 0)]  # type: ignore[arg-type]
        run = self.run(problem, self.weight_iterations, trials=1,
                       schedule=lr_multistep(self.weight_iterations))  # fmt: skip
        objective.terms = []  # z is fixed in stage 2
        second = optimise(run, weights, objective, lambda: Adam(self.weight_lr), initial=start)
        # blind: stage 2 is kept only if it explains the update better than stage 1's latent
        keep = bool(second.distances[0] <= first.distances[best]) or second.interrupted
        problem.info["stage"] = 2 if keep else 1
        problem.info["stage_losses"] = [float(first.distances[best]), float(second.distances[0])]
        return concatenate([(first, best), (second, 0)], (second, 0) if keep else (first, best))
