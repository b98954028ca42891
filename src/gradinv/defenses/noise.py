"""Additive noise on the update: Gaussian (`noise`) and Laplace (`laplace`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option
from .base import ClientRound, Defense, Tensors, rand_like, randn_like, register


@register
@dataclass
class Noise(Defense):
    """Gaussian noise: g + N(0, std²) on every entry of the update."""

    name = "noise"
    std: float = option(0.01, "standard deviation of the Gaussian noise per entry", low=0)

    def apply(self, update: Tensors, round: ClientRound) -> Tensors:
        return {k: g + self.std * randn_like(g, round.generator) for k, g in update.items()}


@register
@dataclass
class Laplace(Defense):
    """Laplace noise: g + Laplace(0, scale) on every entry (std = √2·scale)."""

    name = "laplace"
    scale: float = option(0.01, "scale b of the Laplace noise per entry (std √2·b)", low=0)

    def apply(self, update: Tensors, round: ClientRound) -> Tensors:
        out = {}
        for k, g in update.items():
            # The difference of two Exp(1) draws is Laplace(0, 1); 1 - U lies in (0, 1], so the
            # logarithm is always finite.
            e1 = -(1 - rand_like(g, round.generator)).log()
            e2 = -(1 - rand_like(g, round.generator)).log()
            out[k] = g + self.scale * (e1 - e2)
        return out
