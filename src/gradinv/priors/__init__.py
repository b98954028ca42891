"""Image priors added to the matching loss: `objective = D(ĝ, g) + Σ weight · prior(x̂)`.

A prior is a small dataclass with a `weight` and `penalty(images)`, where images are the dummy batch
in [0,1] pixel space (B, C, H, W), differentiable. Use `make_prior("tv", 1e-2)` or `--prior tv=1e-2`."""

from __future__ import annotations

from ..errors import GradinvError
from ..registry import Registry
from .base import Prior
from .bn import BatchNormStatistics
from .group import GroupConsistency
from .l2 import L2Norm
from .langevin import LangevinNoise
from .tv import TotalVariation

PRIORS: Registry[type[Prior]] = Registry("prior")
PRIORS.register("tv", "total variation (anisotropic; isotropic=True for the isotropic form)")(
    TotalVariation
)
PRIORS.register("l2", "squared l2 norm of the image (DeepInversion / GradInversion)")(L2Norm)
PRIORS.register(
    "bn", "BatchNorm statistics matching: client's batch statistics if shared, else running ones"
)(BatchNormStatistics)
PRIORS.register(
    "group", "group consistency: 4 seeds optimised jointly, pulled toward their registered mean"
)(GroupConsistency)
PRIORS.register(
    "langevin", "Langevin noise: WEIGHT = initial noise std (pixels), decaying linearly to 0"
)(LangevinNoise)


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


__all__ = [
    "PRIORS",
    "BatchNormStatistics",
    "GroupConsistency",
    "L2Norm",
    "LangevinNoise",
    "Prior",
    "TotalVariation",
    "make_prior",
    "parse_prior",
]
