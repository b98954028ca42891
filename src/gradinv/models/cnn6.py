from __future__ import annotations

import torch.nn as nn

from ._layers import flat_size


def cnn6(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The CNN6 of R-GAP (Zhu & Blaschko 2021): six bias-free convolutions with LeakyReLU(0.2)
    (an invertible activation, so each layer's input can be solved for) and one linear layer."""
    c = in_shape[0]

    def conv(cin: int, cout: int, k: int, s: int, p: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False), nn.LeakyReLU(0.2)]

    body = nn.Sequential(
        *conv(c, 12, 4, 2, 2),
        *conv(12, 36, 3, 2, 1),
        *conv(36, 36, 3, 1, 1),
        *conv(36, 36, 3, 1, 1),
        *conv(36, 64, 3, 2, 1),
        *conv(64, 128, 3, 1, 1),
        nn.Flatten(),
    )
    return nn.Sequential(*body, nn.Linear(flat_size(body, in_shape), num_classes, bias=False))
