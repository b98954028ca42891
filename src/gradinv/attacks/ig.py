"""Inverting Gradients (Geiping, Bauermeister, Dröge & Moeller, NeurIPS 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GradinvError
from .base import ATTACKS
from .optimization import OptimizationAttack, Trial, _Context


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
    iterations: int = 2000
    distance: str = "cosine"
    lr: float = 0.1
    tv: float = 1e-2
    signed: bool = True

    def check(self) -> None:
        super().check()
        if not self.lr > 0:
            raise GradinvError(f"lr must be > 0, got {self.lr}")
        if not self.tv >= 0:
            raise GradinvError(f"tv weight must be >= 0, got {self.tv}")

    def _optimise(self, ctx: _Context, trial: Trial) -> None:
        from ..priors import TotalVariation

        tv = TotalVariation(weight=self.tv)
        variables = [trial.x] + ([trial.label_logits] if trial.label_logits is not None else [])
        opt = torch.optim.Adam(variables, lr=self.lr)
        n = self.iterations
        milestones = sorted({int(n * f) for f in (3 / 8, 5 / 8, 7 / 8)})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        for it in range(n):
            opt.zero_grad()
            loss = ctx.objective(trial)
            if self.tv:
                # a mean over the G·B images of a group: × G makes it the sum of per-member TVs
                loss = loss + tv(ctx.observation.denormalize(trial.x)) * ctx.group
            grads = torch.autograd.grad(loss, variables)
            for v, g in zip(variables, grads, strict=True):
                v.grad = g.sign() if self.signed else g
            opt.step()
            sched.step()
            ctx.project(trial.x)
            ctx.record(trial, it, loss.item())
