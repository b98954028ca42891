"""The attack contract: hyper-parameters in a dataclass, one verb `reconstruct(observation)`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..fl import Observation
from ..options import OptionInfo, build, describe, option, validate
from ..registry import Registry


@dataclass
class Reconstruction:
    """What an attack returns.

    images: (B, C, H, W) in [0,1]. labels: recovered labels (None when the attack has none).
    loss_history: matching loss per iteration of the kept run. snapshots: (iteration, images in [0,1])
    for an animation. info: attack-specific facts (restarts, interrupted, certified samples, ...);
    `info["warning"]`, when present, is one line the CLI prints (e.g. a result that cannot be exact)."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    loss_history: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attack:
    """Base class. Subclasses are dataclasses whose fields are the hyper-parameters, declared with
    `gradinv.options.option` (default, meaning, valid range); `__init__` does no work.
    `reconstruct` sees only the Observation, never the private batch."""

    name: ClassVar[str] = ""
    # For the common contract test (tests/test_contract.py): a built-in model this attack supports
    # (with options), fast hyper-parameters, the batch size and image size to try.
    contract_model: ClassVar[str] = "lenet"
    contract_model_options: ClassVar[dict[str, Any]] = {}
    contract_image_size: ClassVar[int] = 16
    contract_channels: ClassVar[int] = 3
    contract_options: ClassVar[dict[str, Any]] = {}
    contract_batch_size: ClassVar[int] = 2
    seed: int = option(0, "seed of the attack's random choices (initialisations)", low=0)
    progress: bool = True

    def reconstruct(self, observation: Observation) -> Reconstruction:
        raise NotImplementedError

    def check(self) -> None:
        """Validate every option (types and ranges); subclasses add cross-option checks."""
        validate(self, f"attack {self.name!r}")

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Hyper-parameters and their defaults."""
        return {o.name: o.default for o in describe(cls)}

    @classmethod
    def describe(cls) -> list[OptionInfo]:
        """Every hyper-parameter with its default, type, meaning and valid range."""
        return describe(cls)


ATTACKS: Registry[type[Attack]] = Registry("attack")


def make_attack(name: str, **options: Any) -> Attack:
    """Instantiate a registered attack from typed values or KEY=VALUE strings; unknown or
    ill-typed options and values out of range are a GradinvError."""
    cls = ATTACKS.get(name)
    progress = options.pop("progress", True)
    attack = build(cls, f"attack {name!r}", options, skip=("progress",))
    attack.progress = bool(progress)
    attack.check()
    return attack
