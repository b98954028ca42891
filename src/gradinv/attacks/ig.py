"""Inverting Gradients (Geiping, Bauermeister, Dröge & Moeller, NeurIPS 2020)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option
from ..priors import Prior, TotalVariation
from .base import ATTACKS
from .engine import Adam, Objective, Optimiser, Problem, lr_multistep
from .engine.loop import Schedule
from .optimization import OptimizationAttack


@ATTACKS.register(
    "ig", "Inverting Gradients (Geiping et al. 2020): cosine + TV, signed Adam, restarts"
)
@dataclass
class InvertingGradients(OptimizationAttack):
    """Inverting Gradients: cosine gradient distance plus total variation, Adam on the sign of the
    gradient, projection onto the valid image box, learning rate ×0.1 at 3/8, 5/8 and 7/8 of the
    iterations, and several restarts keeping the lowest matching loss. Works on FedAvg observations
    by differentiating through the simulated local steps.

    Example::

        obs = observe(model, images, labels, share_labels=True)
        rec = InvertingGradients(iterations=2000, restarts=2).reconstruct(obs)
        print(evaluate(rec.images, images)["psnr"])
    """

    name = "ig"
    contract_options = {"iterations": 20, "restarts": 2}
    iterations: int = option(2000, "signed-Adam steps", low=1)
    distance: str = option("cosine", "gradient distance: l2, cosine, l1, l2-layers")
    lr: float = option(0.1, "Adam learning rate (×0.1 at 3/8, 5/8 and 7/8 of the steps)",
                       low=0, low_open=True)  # fmt: skip
    tv: float = option(1e-4, "total-variation weight (relative to the start distance)", low=0)
    signed: bool = option(True, "feed Adam the sign of the gradient")
    relative: bool = option(
        True, "divide the matching distance by its value at the start, so the TV weight means "
        "the same on every model",
    )  # fmt: skip

    def objective(self, problem: Problem) -> Objective:
        objective = super().objective(problem)
        objective.relative = self.relative
        return objective

    def make_priors(self) -> list[Prior]:
        priors = super().make_priors()
        if self.tv:
            priors.append(TotalVariation(weight=self.tv))
        return priors

    def optimiser(self) -> Optimiser:
        return Adam(self.lr, signed=self.signed)

    def schedule(self) -> Schedule:
        return lr_multistep(self.iterations)
