"""A deep image prior for gradient inversion (Ulyanov, Vedaldi & Lempitsky, CVPR 2018, as a
prior: the architecture alone, no data)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..options import option
from .base import ATTACKS
from .engine import Adam, Problem, Trials, lr_multistep, optimise
from .engine.generative import GeneratorWeights, load_prior_generator
from .optimization import OptimizationAttack


@ATTACKS.register(
    "dip", "deep image prior: a generator's architecture with random weights, weights optimised"
)
@dataclass
class DeepImagePrior(OptimizationAttack):
    """Each image is the output of its own freshly initialised generator on a fixed random input;
    the generators' weights are optimised against the update. The convolutional architecture
    favours natural images without having seen any — a prior that cannot suffer a shift between
    auxiliary and private data.

    Example::

        obs = observe(model, images, labels, share_labels=True)
        rec = DeepImagePrior(iterations=1000).reconstruct(obs)
        print(evaluate(rec.images, images)["psnr"])
    """

    name = "dip"
    contract_options = {"iterations": 3}
    generator: str = option(
        "", "take the architecture from this generator directory (its weights are ignored); "
        "empty: a DCGAN for the data's shape",
    )  # fmt: skip
    iterations: int = option(1000, "Adam steps on the weights", low=1)
    lr: float = option(0.01, "Adam learning rate (×0.1 at 3/8, 5/8, 7/8)", low=0, low_open=True)
    relative: bool = option(True, "divide the matching distance by its value at the start")

    def solve(self, problem: Problem) -> Trials:
        obs = problem.observation
        generator = load_prior_generator(self.generator or "untrained", obs, self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.randn((problem.batch_size, generator.latent_dim), generator=gen,
                        dtype=torch.float64)  # fmt: skip
        weights = GeneratorWeights(obs, generator, z, random_init=True)
        objective = self.objective(problem)
        objective.relative = self.relative
        run = self.run(problem, schedule=lr_multistep(self.iterations))
        return optimise(run, weights, objective, lambda: Adam(self.lr))
