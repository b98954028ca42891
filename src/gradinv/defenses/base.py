"""The defense contract: a dataclass of hyper-parameters with hooks a client calls before the
server's Observation is formed, and one hook (`simulate`) for defense-aware attackers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..errors import GradinvError
from ..fl import ClientRound, Protocol
from ..options import build, documented, parse_spec, validate
from ..registry import Registry

Tensors = dict[str, torch.Tensor]


@dataclass
class Defense:
    """Base class. Subclasses are dataclasses whose fields (declared with `options.option`) are the
    hyper-parameters; all randomness comes from `ClientRound.generator`."""

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        # Validates instances built directly from Python too, not only through make_defense.
        validate(self, f"defense {self.name!r}")

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """The architecture the client trains (and the server knows); default: unchanged."""
        return model

    def client_update(self, round: ClientRound) -> Tensors | None:
        """The whole update, for defenses that change how it is computed (DP-SGD); None = the
        protocol's plain update."""
        return None

    def apply(self, update: Tensors, round: ClientRound) -> Tensors:
        """Post-processing of the client's update; default: identity."""
        return update

    def simulate(self, update: Tensors, observed: Tensors) -> Tensors:
        """The deterministic part of the defense applied to an attacker's simulated `update`,
        differentiable in `update`; parameters the attacker lacks are estimated from `observed`.
        Default: identity (the defense is zero-mean noise, or not simulable from the update)."""
        return update

    def layers(self, names: list[str]) -> list[str]:
        """The parameters a defense-aware attacker still compares (default: all of `names`)."""
        return names

    def informative(self, observed: Tensors) -> Tensors | None:
        """Boolean masks of the entries of `observed` that carry information; None = all."""
        return None

    def privacy(self, batch_size: int, protocol: Protocol) -> dict[str, Any]:
        """A formal guarantee, e.g. {"epsilon", "delta"}; {} for heuristic defenses."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **{f.name: getattr(self, f.name) for f in documented(type(self))},
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Defense:
        d = dict(d)
        if "name" not in d:
            raise GradinvError(f"defense dict {d!r} has no 'name'")
        return make_defense(str(d.pop("name")), **d)


DEFENSES: Registry[type[Defense]] = Registry("defense")


def register(cls: type[Defense]) -> type[Defense]:
    """Class decorator: register under `cls.name` with the docstring's first line as help."""
    return DEFENSES.register(cls.name)(cls)


def make_defense(name: str, **options: Any) -> Defense:
    """Instantiate a registered defense; unknown names and options list the valid ones."""
    cls = DEFENSES.get(name)
    return build(cls, f"defense {name!r}", options)


def parse_defense(spec: str) -> Defense:
    """'NAME[:KEY=VALUE,...]', e.g. 'prune:ratio=0.9,scope=global', 'noise:std=0.01', 'sign'."""
    name, options = parse_spec(spec, "defense")
    return make_defense(name, **options)


# --- helpers shared by the defenses ------------------------------------------------------------


def randn_like(t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) of t's shape, dtype and device, drawn from `generator` (on its own device)."""
    if generator is None:
        return torch.randn_like(t)
    out = torch.randn(t.shape, generator=generator, dtype=t.dtype, device=generator.device)
    return out.to(t.device)


def rand_like(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """U[0, 1) of t's shape, dtype and device, drawn from `generator`."""
    out = torch.rand(t.shape, generator=generator, dtype=t.dtype, device=generator.device)
    return out.to(t.device)


def count(ratio: float, n: int) -> int:
    """How many of n entries a fraction `ratio` means: round half up, so ratio·n = 2.5 -> 3 and
    exact products (0.9 · 10) are not lost to floating point (8.999... -> 9)."""
    return min(n, int(ratio * n + 0.5))
