"""Generator kinds, built by name: each pairs a generator with the discriminator that trains it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from ..errors import GradinvError
from ..registry import Registry
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .generator import Generator


@dataclass(frozen=True)
class Kind:
    generator: type[Generator]
    discriminator: type[nn.Module]


KINDS: Registry[Kind] = Registry("generator kind")
KINDS.register("dcgan", "DCGAN: linear projection + transposed convs, BatchNorm, tanh; 1 or 3 "
               "channels, sides 8..64")(Kind(DCGANGenerator, DCGANDiscriminator))  # fmt: skip


def generator_options(kind: str) -> dict[str, Any]:
    """The constructor arguments of a kind's generator with their defaults."""
    sig = inspect.signature(KINDS.get(kind).generator.__init__)
    return {n: p.default for n, p in sig.parameters.items() if n != "self"}


def build_generator(kind: str = "dcgan", **kwargs: Any) -> Generator:
    """A freshly initialised (untrained) generator, e.g. for a deep image prior or for training."""
    valid = generator_options(kind)
    for key, value in kwargs.items():
        if key not in valid:
            raise GradinvError(
                f"generator kind {kind!r} has no argument {key!r}; valid: {', '.join(valid)}"
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise GradinvError(f"generator argument {key}={value!r} must be an integer")
    return KINDS.get(kind).generator(**kwargs)


def build_discriminator(kind: str, generator_kwargs: dict[str, Any]) -> nn.Module:
    cls = KINDS.get(kind).discriminator
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in generator_kwargs.items() if k in accepted})
