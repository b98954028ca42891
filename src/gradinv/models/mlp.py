from __future__ import annotations

import math

import torch.nn as nn

from ._layers import activation as make_activation


def mlp4(
    in_shape: tuple[int, int, int], num_classes: int, width: int = 1000, activation: str = "relu"
) -> nn.Module:
    """Flatten, then 4 linear layers (input->width->width->width->classes) with an activation between."""
    d = math.prod(in_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate([(d, width), (width, width), (width, width), (width, num_classes)]):
        layers.append(nn.Linear(a, b))
        if i < 3:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)
