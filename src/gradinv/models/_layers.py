"""Small helpers shared by the model builders."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import GradinvError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise GradinvError(f"unknown activation {name!r}; choose from: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def flat_size(body: nn.Module, in_shape: tuple[int, int, int]) -> int:
    """Number of features `body` produces for one input of shape in_shape."""
    with torch.no_grad():
        return int(body(torch.zeros(1, *in_shape)).flatten(1).shape[1])
