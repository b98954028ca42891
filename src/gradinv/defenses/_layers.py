"""Finding the classifier: the last nn.Linear of a model, in the module tree's order."""

from __future__ import annotations

import torch.nn as nn

from ..errors import GradinvError


def last_linear(model: nn.Module, what: str) -> tuple[str, nn.Linear]:
    """(qualified name, module) of the last nn.Linear in `model.named_modules()` order, which is
    the classifier for Sequential models and for models that register their head last."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise GradinvError(f"{what} needs a model with an nn.Linear classifier; found none")
    return found[-1]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule `name` is (the model is changed in place)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if not child:
        raise GradinvError("the model itself is a single nn.Linear: nothing to insert before it")
    setattr(parent, child, new)
