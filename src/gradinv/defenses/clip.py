"""Global l2 clipping of the whole update: g · min(1, C / ‖g‖), ‖·‖ over all tensors together."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..options import option
from .base import ClientRound, Defense, Tensors, register


def global_norm(update: Tensors) -> torch.Tensor:
    return torch.sqrt(sum((g.double() ** 2).sum() for g in update.values()))


def _scaled(update: Tensors, bound: torch.Tensor | float) -> Tensors:
    norm = torch.sqrt(sum((g**2).sum() for g in update.values()))
    # min(1, C/‖g‖) written without dividing by a zero norm (a zero update stays zero).
    factor = torch.where(norm > bound, bound / norm.clamp_min(torch.finfo(norm.dtype).tiny), 1.0)
    return {k: g * factor.to(g.dtype) for k, g in update.items()}


@register
@dataclass
class Clip(Defense):
    """Global l2 clipping: g · min(1, max_norm / ‖g‖) with ‖g‖ over all tensors of the update."""

    name = "clip"
    max_norm: float = option(
        1.0, "bound C on the l2 norm of the whole update", low=0, low_open=True
    )

    def apply(self, update: Tensors, round: ClientRound) -> Tensors:
        return _scaled(update, self.max_norm)

    def simulate(self, update: Tensors, observed: Tensors) -> Tensors:
        # The attacker does not know C, but the observed norm is min(‖g‖, C): clipping the
        # simulated update to it reproduces the defense exactly for the true update.
        bound = global_norm(observed).to(next(iter(update.values())).dtype)
        return _scaled(update, bound)
