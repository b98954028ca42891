"""Optimisers over R independent trials at once. Every variable has a leading trial dimension and
every trial's update depends only on its own loss: R trials optimised together give the same
iterates as R separate runs, at a fraction of the cost on small models.

A closure evaluates all trials and leaves each variable's `.grad`; it returns the per-trial losses
(R,) (non-finite for a diverged trial, whose gradient is then zero)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

Closure = Callable[[], torch.Tensor]


class Optimiser:
    """Base class: `bind(variables)` once, then `step(closure, lr_factor) -> losses (R,)` (the
    losses before the step)."""

    def bind(self, variables: Sequence[torch.Tensor]) -> None:
        raise NotImplementedError

    def step(self, closure: Closure, lr_factor: float = 1.0) -> torch.Tensor:
        raise NotImplementedError


class Adam(Optimiser):
    """Adam (elementwise, hence independent per trial); `signed=True` feeds it the sign of the
    gradient (Inverting Gradients)."""

    def __init__(self, lr: float, signed: bool = False, betas: tuple[float, float] = (0.9, 0.999)):
        self.lr, self.signed, self.betas = lr, signed, betas

    def bind(self, variables: Sequence[torch.Tensor]) -> None:
        self.variables = list(variables)
        self.opt = torch.optim.Adam(self.variables, lr=self.lr, betas=self.betas)

    def step(self, closure: Closure, lr_factor: float = 1.0) -> torch.Tensor:
        losses = closure()
        if self.signed:
            for v in self.variables:
                if v.grad is not None:
                    v.grad.sign_()
        for group in self.opt.param_groups:
            group["lr"] = self.lr * lr_factor
        self.opt.step()
        return losses


class LBFGS(Optimiser):
    """Limited-memory BFGS with a separate history, direction and step length per trial.

    Each `step` runs `max_iter` inner iterations (as torch.optim.LBFGS does). The step length is
    found by a Wolfe line search run for all trials in lockstep (one batched evaluation per
    trial step); pairs without clearly positive curvature are skipped. The first step of a trial
    starts at min(1, 1/‖g‖₁)·lr, later ones at lr. No early stop: with tiny gradients (PyTorch's
    default init) tolerance tests would end the attack prematurely."""

    def __init__(
        self,
        lr: float = 1.0,
        max_iter: int = 20,
        history: int = 100,
        line_search: bool = True,
        max_backtracks: int = 12,
    ) -> None:
        self.lr, self.max_iter, self.m = lr, max_iter, history
        self.line_search, self.max_backtracks = line_search, max_backtracks

    def bind(self, variables: Sequence[torch.Tensor]) -> None:
        self.variables = list(variables)
        r = variables[0].shape[0]
        n = sum(v[0].numel() for v in variables)
        ref = variables[0]
        self.r, self.n = r, n
        self.s = torch.zeros(r, self.m, n, dtype=ref.dtype, device=ref.device)
        self.y = torch.zeros_like(self.s)
        self.rho = torch.zeros(r, self.m, dtype=ref.dtype, device=ref.device)
        self.count = torch.zeros(r, dtype=torch.long, device=ref.device)
        self.ptr = torch.zeros(r, dtype=torch.long, device=ref.device)
        self.h_diag = torch.ones(r, dtype=ref.dtype, device=ref.device)
        self.started = torch.zeros(r, dtype=torch.bool, device=ref.device)

    # --- flat views of all variables of all trials ----------------------------------------------
    def _flat(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        parts = [
            (t if t is not None else torch.zeros_like(v)).reshape(self.r, -1)
            for t, v in zip(tensors, self.variables, strict=True)
        ]
        return torch.cat(parts, dim=1)

    def _set(self, flat: torch.Tensor) -> None:
        with torch.no_grad():
            offset = 0
            for v in self.variables:
                size = v[0].numel()
                v.copy_(flat[:, offset : offset + size].reshape(v.shape))
                offset += size

    def _evaluate(self, closure: Closure) -> tuple[torch.Tensor, torch.Tensor]:
        losses = closure().detach()
        grads = self._flat([v.grad for v in self.variables]).detach()
        return losses, torch.nan_to_num(grads, nan=0.0, posinf=0.0, neginf=0.0)

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """Two-loop recursion, per trial, over its own history (most recent pair first)."""
        q = -g
        rows = torch.arange(self.r, device=g.device)
        depth = int(self.count.max())
        alphas, pairs = [], []
        for k in range(depth):
            idx = (self.ptr - 1 - k) % self.m
            valid = (self.count > k).to(g.dtype)
            s_k, y_k = self.s[rows, idx], self.y[rows, idx]
            rho_k = self.rho[rows, idx] * valid
            a = rho_k * (s_k * q).sum(1)
            q = q - a[:, None] * y_k
            alphas.append(a)
            pairs.append((s_k, y_k, rho_k))
        d = q * self.h_diag[:, None]
        for (s_k, y_k, rho_k), a in zip(reversed(pairs), reversed(alphas), strict=True):
            b = rho_k * (y_k * d).sum(1)
            d = d + s_k * (a - b)[:, None]
        return d

    def _remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        ys = (y * s).sum(1)
        # positive curvature, relative to the pair's size (gradients can be tiny in absolute terms)
        ok = ys > 1e-10 * y.norm(dim=1) * s.norm(dim=1)
        if not bool(ok.any()):
            return
        rows = torch.nonzero(ok).flatten()
        idx = self.ptr[rows]
        self.s[rows, idx] = s[rows]
        self.y[rows, idx] = y[rows]
        self.rho[rows, idx] = 1.0 / ys[rows]
        self.h_diag[rows] = ys[rows] / (y[rows] * y[rows]).sum(1)
        self.ptr[rows] = (idx + 1) % self.m
        self.count[rows] = torch.clamp(self.count[rows] + 1, max=self.m)

    def step(self, closure: Closure, lr_factor: float = 1.0) -> torch.Tensor:
        lr = self.lr * lr_factor
        loss, g = self._evaluate(closure)
        first = loss.clone()
        x = self._flat(self.variables).detach()
        stalled = torch.zeros_like(loss, dtype=torch.bool)
        for _ in range(self.max_iter):
            d = self._direction(g)
            gtd = (g * d).sum(1)
            uphill = ~(gtd < 0)
            if bool(uphill.any()):  # not a descent direction: fall back to steepest descent
                d = torch.where(uphill[:, None], -g, d)
                gtd = (g * d).sum(1)
            t = torch.full_like(loss, lr)
            fresh = ~self.started
            if bool(fresh.any()):
                scale = (1.0 / g.abs().sum(1).clamp_min(1e-300)).clamp(max=1.0)
                t = torch.where(fresh, scale * lr, t)
            x_new, loss_new, g_new, t = self._search(closure, x, loss, g, d, gtd, t, stalled)
            # no acceptable step: the trial sits at its noise floor for the rest of this step
            stalled |= t == 0
            self.started |= t > 0
            self._remember(x_new - x, g_new - g)
            x, loss, g = x_new, loss_new, g_new
            if bool(stalled.all()):
                break
        self._set(x)
        return first

    def _search(self, closure, x, loss, g, d, gtd, t, stalled):  # noqa: ANN001, ANN202
        """A weak-Wolfe line search for every trial at once (c₁ = 1e-4, c₂ = 0.9): the step
        doubles while the slope is still steep (keeping the last good step when an expansion fails)
        and halves while the decrease is not enough, so tiny
        gradients (PyTorch's default init) still get long steps. The best point meeting the
        sufficient-decrease condition is kept; a trial without one keeps its point (t = 0)."""
        done = stalled.clone()
        x_acc, loss_acc, g_acc, t_acc = x.clone(), loss.clone(), g.clone(), torch.zeros_like(t)
        lo, hi = torch.zeros_like(t), torch.full_like(t, math.inf)
        tries = self.max_backtracks if self.line_search else 1
        for _ in range(tries):
            point = torch.where(done[:, None], x_acc, x + t[:, None] * d)
            self._set(point)
            loss_t, g_t = self._evaluate(closure)
            slope = (g_t * d).sum(1)
            active = ~done
            sufficient = active & torch.isfinite(loss_t)
            if self.line_search:
                sufficient &= loss_t <= loss + 1e-4 * t * gtd
            better = sufficient & ((t_acc == 0) | (loss_t < loss_acc))
            x_acc = torch.where(better[:, None], point, x_acc)
            g_acc = torch.where(better[:, None], g_t, g_acc)
            loss_acc = torch.where(better, loss_t, loss_acc)
            t_acc = torch.where(better, t, t_acc)
            if not self.line_search:
                break
            # weak Wolfe: enough decrease and a slope no longer steep (then sᵀy > 0 holds)
            steep = sufficient & (slope < 0.9 * gtd)
            overshot = active & ~sufficient
            # an expansion that fails falls back on the last good step (no costly zoom)
            done |= (sufficient & ~steep) | (overshot & (t_acc > 0))
            lo = torch.where(steep, t, lo)
            hi = torch.where(overshot, t, hi)
            grow = torch.isinf(hi)
            t = torch.where(done, t, torch.where(grow, 2 * t, 0.5 * (lo + hi)))
            if bool(done.all()):
                break
        # a diverged trial (non-finite everywhere) reports its non-finite loss
        loss_acc = torch.where((t_acc > 0) | torch.isfinite(loss), loss_acc, loss)
        return x_acc, loss_acc, g_acc, t_acc


def lr_multistep(iterations: int, fractions: Sequence[float] = (3 / 8, 5 / 8, 7 / 8)):  # noqa: ANN201
    """Learning-rate factor ×0.1 at each milestone (Inverting Gradients' schedule)."""
    milestones = sorted({int(iterations * f) for f in fractions})

    def factor(iteration: int) -> float:
        return 0.1 ** sum(iteration >= m for m in milestones)

    return factor


def lr_warmup_cosine(iterations: int, warmup: float):  # noqa: ANN201
    """Linear warm-up over `warmup`·iterations, then cosine decay to 0 (GradInversion)."""
    warm = max(1, int(warmup * iterations))

    def factor(iteration: int) -> float:
        if iteration < warm:
            return (iteration + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (iteration - warm) / max(1, iterations - warm)))

    return factor
