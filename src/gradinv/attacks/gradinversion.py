"""GradInversion (Yin, Mallya, Vahdat, Alvarez, Kautz & Molchanov, CVPR 2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GradinvError
from ..priors import BatchNormStatistics, GroupConsistency, L2Norm, Prior, TotalVariation
from .base import ATTACKS
from .optimization import OptimizationAttack, Trial, _Context


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
    contract_options = {"iterations": 2, "seeds": 1}
    iterations: int = 20_000
    distance: str = "l2"
    lr: float = 0.1
    warmup: float = 0.05  # fraction of the iterations with a linear learning-rate warm-up
    grad_weight: float = 1e-3  # α_grad
    tv: float = 1e-4  # α_TV
    l2: float = 1e-6  # α_l2
    bn: float = 0.1  # α_BN
    group: float = 0.01  # α_group
    seeds: int = 4  # group size (1 = no group consistency)

    def check(self) -> None:
        super().check()
        if not self.lr > 0:
            raise GradinvError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise GradinvError(f"warmup must be in [0, 1), got {self.warmup}")
        if not self.grad_weight > 0:
            raise GradinvError(f"grad_weight must be > 0, got {self.grad_weight}")
        for key in ("tv", "l2", "bn", "group"):
            if not getattr(self, key) >= 0:
                raise GradinvError(f"{key} weight must be >= 0, got {getattr(self, key)}")
        if self.seeds < 1:
            raise GradinvError(f"seeds must be >= 1, got {self.seeds}")

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
        n = self.iterations
        warm = max(1, int(self.warmup * n))
        if iteration < warm:
            return (iteration + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (iteration - warm) / max(1, n - warm)))

    def _optimise(self, ctx: _Context, trial: Trial) -> None:
        variables = [trial.x] + ([trial.label_logits] if trial.label_logits is not None else [])
        opt = torch.optim.Adam(variables, lr=self.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.learning_rate)
        for it in range(self.iterations):
            opt.zero_grad()
            loss = ctx.objective(trial, distance_weight=self.grad_weight)
            loss.backward()
            opt.step()
            sched.step()
            ctx.project(trial.x)
            ctx.record(trial, it, loss.item())
