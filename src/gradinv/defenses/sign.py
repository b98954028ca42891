"""signSGD-style compression: only the sign of every entry is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import ClientRound, Defense, Tensors, register


@register
@dataclass
class Sign(Defense):
    """Sign compression: sign(g) entry-wise (0 stays 0); the magnitudes are discarded."""

    name = "sign"
    # Temperature of the smooth sign in `simulate`, relative to the tensor's mean |g|: small enough
    # to saturate most entries, large enough to keep a useful gradient for the attacker.
    temperature: ClassVar[float] = 0.1

    def apply(self, update: Tensors, round: ClientRound) -> Tensors:
        return {k: torch.sign(g) for k, g in update.items()}

    def simulate(self, update: Tensors, observed: Tensors) -> Tensors:
        # sign() has a zero gradient almost everywhere: attackers need a smooth surrogate,
        # tanh(g / (t · mean|g|)), scale-free because the observed signs carry no scale.
        out = {}
        for k, g in update.items():
            scale = g.detach().abs().mean().clamp_min(torch.finfo(g.dtype).tiny)
            out[k] = torch.tanh(g / (self.temperature * scale))
        return out
