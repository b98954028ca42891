"""k-bit stochastic quantisation with a per-tensor scale (unbiased)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..options import option
from .base import ClientRound, Defense, Tensors, rand_like, register


@register
@dataclass
class Quantize(Defense):
    """Unbiased stochastic quantisation to 2^bits levels per tensor.

    Per tensor, s = max|g| and the 2^bits levels -s + j·Δ (j = 0 … 2^bits − 1, Δ = 2s / (2^bits − 1)); each entry rounds to one of its two
    neighbouring levels with probabilities that make E[Q(g)] = g."""

    name = "quantize"
    bits: int = option(
        8, "bits per entry (2^bits levels spanning [-max|g|, max|g|])", low=1, high=16
    )

    def apply(self, update: Tensors, round: ClientRound) -> Tensors:
        levels = 2**self.bits - 1  # number of intervals between the 2^bits levels
        out = {}
        for k, g in update.items():
            s = g.abs().max()
            if s == 0:
                out[k] = g.clone()
                continue
            step = 2 * s / levels
            pos = ((g + s) / step).clamp(0, levels)  # position on the grid, in [0, levels]
            low = pos.floor()
            # Round up with probability equal to the fractional part: E[level] = pos exactly.
            up = (rand_like(g, round.generator) < pos - low).to(g.dtype)
            out[k] = -s + (low + up).clamp(max=levels) * step
        return out

    def simulate(self, update: Tensors, observed: Tensors) -> Tensors:
        # In expectation the quantiser is the identity on [-s, s]; s = max|observed| exactly
        # (the largest entry sits on the end level), so the deterministic part is a clamp.
        out = {}
        for k, g in update.items():
            s = observed[k].abs().max().to(g.dtype)
            out[k] = torch.maximum(torch.minimum(g, s), -s)
        return out
