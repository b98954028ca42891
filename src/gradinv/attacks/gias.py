"""GIAS: gradient inversion in alternating spaces (Jeon, Kim, Kim, Kim & Ok, NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option
from .base import ATTACKS
from .engine import Adam, Problem, Trials, lr_multistep, optimise
from .engine.generative import GeneratorWeights, Latent, load_prior_generator
from .engine.loop import concatenate
from .optimization import OptimizationAttack


@ATTACKS.register(
    "gias", "GIAS (Jeon et al. 2021): search a generator's latent, then fine-tune one copy of the "
    "generator per image",
)  # fmt: skip
@dataclass
class GIAS(OptimizationAttack):
    """Stage 1: Adam on the latent z of a trained generator G (one z per image, `restarts` trials
    together, the lowest matching loss kept). Stage 2: z frozen, one copy of G per image, all
    copies optimised jointly against the batch's update — a fine-tuned copy can represent images
    G cannot, starting from G's best guess. Pixels stay valid through G's tanh.

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
    weight_lr: float = option(1e-3, "stage 2 learning rate", low=0, low_open=True)
    relative: bool = option(True, "divide the matching distance by its value at the start")

    def solve(self, problem: Problem) -> Trials:
        obs = problem.observation
        generator = load_prior_generator(self.generator, obs, self.seed)
        objective = self.objective(problem)
        objective.relative = self.relative
        latent = Latent(obs, generator, problem.batch_size)
        first = optimise(self.run(problem), latent, objective, lambda: Adam(self.lr))
        if first.interrupted or self.weight_iterations == 0:
            return first
        best = first.best
        z = first.variables[0][best].detach()
        weights = GeneratorWeights(obs, generator, z)
        start = [v.unsqueeze(0) for v in weights.initial(None, 0)]  # type: ignore[arg-type]
        run = self.run(problem, self.weight_iterations, trials=1,
                       schedule=lr_multistep(self.weight_iterations))  # fmt: skip
        second = optimise(run, weights, objective, lambda: Adam(self.weight_lr), initial=start)
        return concatenate([(first, best), (second, 0)], (second, 0))
