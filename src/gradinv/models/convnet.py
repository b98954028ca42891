from __future__ import annotations

import torch.nn as nn


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


def convnet(in_shape: tuple[int, int, int], num_classes: int, width: int = 16) -> nn.Module:
    """The ConvNet family of Inverting Gradients (Geiping et al. 2020): eight 3x3 conv-BN-ReLU
    blocks of widths w, 2w, 2w, 4w, 4w, 4w | pool | 4w, 4w | pool, then a linear classifier.
    The paper uses w=64; the default here is 16 so CPU runs stay quick."""
    w = width
    layers = _block(in_shape[0], w) + _block(w, 2 * w) + _block(2 * w, 2 * w) + _block(2 * w, 4 * w)
    layers += _block(4 * w, 4 * w) + _block(4 * w, 4 * w) + [nn.MaxPool2d(3)]
    layers += _block(4 * w, 4 * w) + _block(4 * w, 4 * w) + [nn.AdaptiveMaxPool2d(3)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(36 * w, num_classes))
