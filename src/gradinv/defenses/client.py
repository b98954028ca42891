"""Running a client round under defenses: wrapping the model once, then the defended update (the
computation itself lives in gradinv.fl, which the simulated client and attackers share)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from ..fl import ClientRound, bound_generator
from ..fl import defended_update as _defended_update
from .base import Defense, Tensors


def as_list(defenses: Defense | Sequence[Defense] | None) -> list[Defense]:
    if defenses is None:
        return []
    return [defenses] if isinstance(defenses, Defense) else list(defenses)


def wrap(defenses: Defense | Sequence[Defense] | None, model: nn.Module) -> nn.Module:
    """Apply every defense's `wrap_model` in order (done once, when the deployment is set up)."""
    for d in as_list(defenses):
        model = d.wrap_model(model)
    return model


def defended_update(defenses: Defense | Sequence[Defense] | None, round: ClientRound) -> Tensors:
    """The update the client sends under `defenses` (see gradinv.fl.defended_update)."""
    return _defended_update(as_list(defenses), round)


__all__ = ["as_list", "bound_generator", "defended_update", "wrap"]
