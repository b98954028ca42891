from __future__ import annotations

import torch.nn as nn

from ..errors import GradinvError
from ._layers import flat_size


def lenet(in_shape: tuple[int, int, int], num_classes: int, init: str = "default") -> nn.Module:
    """The LeNet of DLG/iDLG (Zhu et al. 2019): three 5x5 convolutions with 12 channels, strides
    2, 2, 1, padding 2, sigmoid activations, then one linear layer. `init="default"` keeps PyTorch's
    initialisation; `init="uniform"` draws every weight and bias from U(-0.5, 0.5) as DLG's
    reference code does (larger gradients, peaked outputs: harder for label counting)."""
    c = in_shape[0]
    body = nn.Sequential(
        nn.Conv2d(c, 12, 5, stride=2, padding=2),
        nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, stride=2, padding=2),
        nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, stride=1, padding=2),
        nn.Sigmoid(),
        nn.Flatten(),
    )
    model = nn.Sequential(*body, nn.Linear(flat_size(body, in_shape), num_classes))
    if init == "uniform":
        for p in model.parameters():
            nn.init.uniform_(p, -0.5, 0.5)
    elif init != "default":
        raise GradinvError(f"lenet init {init!r}; choose from: uniform, default")
    return model
