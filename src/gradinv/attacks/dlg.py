"""Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GradinvError
from .base import ATTACKS
from .optimization import OptimizationAttack, Trial, _Context


@ATTACKS.register("dlg", "DLG (Zhu et al. 2019): l2 gradient matching with L-BFGS, labels jointly")
@dataclass
class DLG(OptimizationAttack):
    """Deep Leakage from Gradients: minimise the l2 distance between the observed gradient and the
    dummy batch's gradient with L-BFGS. Without observed labels, soft labels (softmax of free
    logits) are optimised jointly with the images, as in the paper. As in the paper there is no
    box projection during the optimisation (it would break L-BFGS's curvature pairs); the result
    is clamped to [0,1].

    Example::

        obs = observe(model, images, labels, share_labels=True)
        rec = DLG(iterations=100).reconstruct(obs)
        print(evaluate(rec.images, images)["psnr"])
    """

    name = "dlg"
    contract_options = {"iterations": 3}
    iterations: int = 100
    distance: str = "l2"
    label_strategy: str = "joint"
    lr: float = 1.0
    max_iter_per_step: int = 20  # L-BFGS inner iterations per outer iteration
    line_search: bool = True  # strong-Wolfe line search (more stable than the paper's fixed step)

    def check(self) -> None:
        super().check()
        if not self.lr > 0:
            raise GradinvError(f"lr must be > 0, got {self.lr}")

    def _optimise(self, ctx: _Context, trial: Trial) -> None:
        variables = [trial.x] + ([trial.label_logits] if trial.label_logits is not None else [])
        opt = torch.optim.LBFGS(
            variables,
            lr=self.lr,
            max_iter=self.max_iter_per_step,
            history_size=100,
            line_search_fn="strong_wolfe" if self.line_search else None,
            # No early stop: with small gradients (e.g. PyTorch's default init) the l2 loss is tiny in
            # absolute terms and L-BFGS's default tolerances would end the attack prematurely.
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = ctx.objective(trial)
            loss.backward()
            return loss

        for it in range(self.iterations):
            loss = opt.step(closure)
            ctx.record(trial, it, loss.item())
