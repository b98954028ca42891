"""Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option
from .base import ATTACKS
from .engine import LBFGS, Optimiser, Pixels, Problem, Trials, optimise
from .optimization import OptimizationAttack


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
    iterations: int = option(
        100, "outer L-BFGS steps (each runs max_iter_per_step inner ones)", low=1
    )
    distance: str = option("l2", "gradient distance: l2, cosine, l1, l2-layers")
    label_strategy: str = option(
        "joint", "labels when not observed: joint (soft labels optimised with the images, as in "
        "the paper) or a label strategy",
    )  # fmt: skip
    lr: float = option(1.0, "L-BFGS step length", low=0, low_open=True)
    max_iter_per_step: int = option(20, "L-BFGS inner iterations per outer step", low=1)
    history: int = option(100, "L-BFGS history size (curvature pairs kept per trial)", low=1)
    line_search: bool = option(True, "backtracking line search (a fixed step when false)")

    def optimiser(self) -> Optimiser:
        return LBFGS(self.lr, self.max_iter_per_step, self.history, self.line_search)

    def solve(self, problem: Problem) -> Trials:
        # no box projection during the optimisation: it would break L-BFGS's curvature pairs
        pixels = Pixels(problem.observation, problem.group * problem.batch_size,
                        problem.batch_size, problem.priors, problem.start, box=False)  # fmt: skip
        return optimise(self.run(problem), pixels, self.objective(problem), self.optimiser)
