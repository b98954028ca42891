"""GradInversion (Yin, Mallya, Vahdat, Alvarez, Kautz & Molchanov, CVPR 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option
from ..priors import BatchNormStatistics, GroupConsistency, L2Norm, Prior, TotalVariation
from .base import ATTACKS
from .engine import Adam, Objective, Optimiser, Problem, lr_warmup_cosine
from .engine.loop import Schedule
from .optimization import OptimizationAttack


@ATTACKS.register(
    "gradinversion",
    "GradInversion (Yin et al. 2021): l2 matching + TV, l2, BatchNorm and group-consistency priors",
)
@dataclass
class GradInversion(OptimizationAttack):
    """GradInversion: α_grad·‖ĝ − g‖² plus total variation, the image's l2 norm, BatchNorm statistics
    matching (running statistics, or the client's batch statistics when shared) and group
    consistency over `seeds` jointly optimised initialisations; Adam with linear warm-up and cosine
    decay, images projected onto the valid box. Labels come from the observation or from
    `label_strategy` (default "auto"). Defaults are the paper's (20k iterations: slow on a CPU).
    The BatchNorm prior is skipped on models without BatchNorm layers.

    Example::

        obs = observe(resnet18_model, images, labels)
        rec = GradInversion(iterations=2000).reconstruct(obs)
        print(evaluate(rec.images, images)["psnr"])
    """

    name = "gradinversion"
    contract_model = "resnet18"
    contract_model_options = {"width": 4}
    contract_options = {"iterations": 2, "seeds": 1}
    iterations: int = option(20_000, "Adam steps (the paper's 20 000 are slow on a CPU)", low=1)
    distance: str = option("l2", "gradient distance: l2, cosine, l1, l2-layers")
    lr: float = option(0.1, "Adam learning rate", low=0, low_open=True)
    warmup: float = option(0.05, "fraction of the steps with a linear learning-rate warm-up",
                           low=0, high=1, high_open=True)  # fmt: skip
    grad_weight: float = option(
        1e-3, "α_grad: weight of the gradient distance", low=0, low_open=True
    )
    tv: float = option(1e-4, "α_TV: total-variation weight", low=0)
    l2: float = option(1e-6, "α_l2: image l2-norm weight", low=0)
    bn: float = option(0.1, "α_BN: BatchNorm-statistics weight (skipped without BatchNorm)", low=0)
    group: float = option(0.01, "α_group: group-consistency weight", low=0)
    seeds: int = option(4, "group size: dummy batches optimised jointly (1 = no group)", low=1)

    def make_priors(self) -> list[Prior]:
        priors = super().make_priors()
        if self.tv:
            priors.append(TotalVariation(weight=self.tv))
        if self.l2:
            priors.append(L2Norm(weight=self.l2))
        if self.bn:
            priors.append(BatchNormStatistics(weight=self.bn, required=False))
        if self.group and self.seeds > 1:
            priors.append(GroupConsistency(weight=self.group, seeds=self.seeds))
        return priors

    def learning_rate(self, iteration: int) -> float:
        """Factor on `lr` at `iteration`: linear warm-up, then cosine decay to 0."""
        return lr_warmup_cosine(self.iterations, self.warmup)(iteration)

    def optimiser(self) -> Optimiser:
        return Adam(self.lr)

    def schedule(self) -> Schedule:
        return lr_warmup_cosine(self.iterations, self.warmup)

    def objective(self, problem: Problem) -> Objective:
        objective = super().objective(problem)
        objective.distance_weight = self.grad_weight
        return objective
