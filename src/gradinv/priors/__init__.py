"""Image priors added to the matching loss: `objective = D(ĝ, g) + Σ weight · prior(x̂)`.

A prior is a small dataclass with a `weight` and `penalty(images)`, where images are the dummy batch
in [0,1] pixel space (B, C, H, W), differentiable. Use `make_prior("tv", 1e-2)` or `--prior tv=1e-2`."""

from __future__ import annotations

from ..errors import GradinvError
from ..registry import Registry
from .base import Prior
from .tv import TotalVariation

PRIORS: Registry[type[Prior]] = Registry("prior")
PRIORS.register("tv", "total variation (anisotropic; isotropic=True for the isotropic form)")(
    TotalVariation
)


def make_prior(name: str, weight: float) -> Prior:
    if not weight >= 0:
        raise GradinvError(f"prior {name!r}: weight must be >= 0, got {weight}")
    return PRIORS.get(name)(weight=weight)


def parse_prior(spec: str) -> tuple[str, float]:
    """'tv=1e-2' -> ('tv', 0.01), with a clear error for anything else."""
    name, sep, value = spec.partition("=")
    if not sep:
        raise GradinvError(f"prior {spec!r}: expected NAME=WEIGHT, e.g. tv=1e-2")
    try:
        weight = float(value)
    except ValueError:
        raise GradinvError(f"prior {spec!r}: weight {value!r} is not a number") from None
    PRIORS.get(name)
    return name, weight


__all__ = ["PRIORS", "Prior", "TotalVariation", "make_prior", "parse_prior"]
