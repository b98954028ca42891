"""The attack contract: hyper-parameters in a dataclass, one verb `reconstruct(observation)`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from ..errors import GradinvError
from ..fl import Observation
from ..registry import Registry


@dataclass
class Reconstruction:
    """What an attack returns.

    images: (B, C, H, W) in [0,1]. labels: recovered labels (None when the attack has none).
    loss_history: matching loss per iteration of the kept run. snapshots: (iteration, images in [0,1])
    for an animation. info: attack-specific facts (restarts, interrupted, certified samples, ...)."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    loss_history: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attack:
    """Base class. Subclasses are dataclasses whose fields are the hyper-parameters; `__init__` does
    no work. `reconstruct` sees only the Observation, never the private batch."""

    name: ClassVar[str] = ""
    # For the common contract test (tests/test_contract.py): a built-in model this attack supports
    # (with options), fast hyper-parameters, the batch size and image size to try.
    contract_model: ClassVar[str] = "lenet"
    contract_model_options: ClassVar[dict[str, Any]] = {}
    contract_image_size: ClassVar[int] = 16
    contract_options: ClassVar[dict[str, Any]] = {}
    contract_batch_size: ClassVar[int] = 2
    seed: int = 0
    progress: bool = True

    def reconstruct(self, observation: Observation) -> Reconstruction:
        raise NotImplementedError

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Hyper-parameters and their defaults."""
        return {f.name: f.default for f in fields(cls) if f.name != "progress"}


ATTACKS: Registry[type[Attack]] = Registry("attack")


def make_attack(name: str, **options: Any) -> Attack:
    """Instantiate a registered attack; unknown or ill-typed options are a GradinvError."""
    cls = ATTACKS.get(name)
    valid = {f.name: f.default for f in fields(cls)}
    for key, value in options.items():
        if key not in valid:
            raise GradinvError(
                f"attack {name!r} has no option {key!r}; valid options: {', '.join(sorted(valid))}"
            )
        _check_type(name, key, value, valid[key])
    try:
        attack = cls(**options)
        check = getattr(attack, "check", None)
        if check is not None:
            check()
    except (TypeError, ValueError) as exc:
        if isinstance(exc, GradinvError):
            raise
        raise GradinvError(f"attack {name!r}: bad option ({exc})") from None
    return attack


def _check_type(attack: str, key: str, value: Any, default: Any) -> None:
    """Options must have the type of their default (an int is fine where a float is expected)."""
    if default is None or isinstance(default, tuple):
        ok = default is None or isinstance(value, (tuple, list))
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default)) and not (
            isinstance(value, bool) and not isinstance(default, bool)
        )
    if not ok:
        raise GradinvError(
            f"attack {attack!r}: option {key}={value!r} must be of type {type(default).__name__} "
            f"(default {default!r})"
        )
