"""Magnitude pruning: the smallest |g| entries are zeroed, per tensor or over the whole update."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..options import option
from .base import ClientRound, Defense, Tensors, count, register


def _smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k smallest entries of a flat tensor. A stable sort breaks ties by
    position (the lower flat index is pruned first), so equal magnitudes prune deterministically."""
    mask = torch.zeros(values.shape, dtype=torch.bool, device=values.device)
    if k > 0:
        order = torch.sort(values, stable=True).indices
        mask[order[:k]] = True
    return mask


@register
@dataclass
class Prune(Defense):
    """Magnitude pruning: zero the fraction `ratio` of entries with the smallest |g|.

    round(ratio·n) entries of each tensor (scope=tensor) or of the whole update (scope=global)."""

    name = "prune"
    ratio: float = option(0.9, "fraction of entries set to zero", low=0, high=1)
    scope: str = option(
        "tensor",
        "tensor: prune each tensor separately; global: one threshold for the update",
        choices=("tensor", "global"),
    )

    def apply(self, update: Tensors, round: ClientRound) -> Tensors:
        if self.scope == "tensor":
            masks = {k: _smallest(g.detach().abs().flatten(), count(self.ratio, g.numel()))
                     for k, g in update.items()}  # fmt: skip
        else:
            # One sort over every entry, in the update's own (parameter) order, so global ties
            # too are broken by position.
            flat = torch.cat([g.detach().abs().flatten().double() for g in update.values()])
            pruned = _smallest(flat, count(self.ratio, flat.numel()))
            masks, start = {}, 0
            for k, g in update.items():
                masks[k] = pruned[start : start + g.numel()]
                start += g.numel()
        return {k: g.masked_fill(masks[k].view(g.shape), 0) for k, g in update.items()}

    def simulate(self, update: Tensors, observed: Tensors) -> Tensors:
        # The pruned positions are the observed zeros (a kept entry that is exactly zero is zero
        # in the true update as well, so masking it changes nothing there).
        return {k: g * (observed[k] != 0).to(g.dtype) for k, g in update.items()}

    def informative(self, observed: Tensors) -> Tensors | None:
        return {k: v != 0 for k, v in observed.items()}
