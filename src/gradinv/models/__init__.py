"""Models the literature attacks, built by name. Any user nn.Module with forward(x) works as well."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from ..errors import GradinvError
from ..options import parse_text
from ..registry import Registry
from .cnn6 import cnn6
from .convnet import convnet
from .lenet import lenet
from .mlp import mlp4
from .resnet import resnet18
from .train import train_model

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register(
    "mlp4", "4 linear layers (width 1000, ReLU): DLG's and SPEAR's fully connected net"
)(mlp4)
MODELS.register("lenet", "DLG/iDLG LeNet: 3 sigmoid 5x5 convs (12 ch, strides 2,2,1), 1 linear")(
    lenet
)
MODELS.register("convnet", "Inverting Gradients' ConvNet family (8 convs + BatchNorm, width w)")(
    convnet
)
MODELS.register("resnet18", "CIFAR-style ResNet-18 with BatchNorm")(resnet18)
MODELS.register("cnn6", "R-GAP's CNN: 6 bias-free convs with LeakyReLU(0.2), 1 linear")(cnn6)


def model_options(name: str) -> dict[str, Any]:
    """The keyword options a model accepts, with their defaults."""
    sig = inspect.signature(MODELS.get(name))
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name not in ("in_shape", "num_classes") and p.default is not inspect.Parameter.empty
    }


def parse_option(name: str, key: str, value: str) -> Any:
    """Convert a 'key=value' string to the type of the option's default (options are typed)."""
    options = model_options(name)
    if key not in options:
        raise GradinvError(
            f"model {name!r} has no option {key!r}; valid options: {', '.join(options) or 'none'}"
        )
    return parse_text(value, options[key], f"model option {key}")


def build_model(
    name: str, in_shape: tuple[int, int, int], num_classes: int, **options: Any
) -> nn.Module:
    """Build a registered model for inputs of shape (C, H, W)."""
    builder = MODELS.get(name)
    valid = model_options(name)
    for key in options:
        if key not in valid:
            raise GradinvError(
                f"model {name!r} has no option {key!r}; valid options: {', '.join(valid) or 'none'}"
            )
    if num_classes < 2:
        raise GradinvError(f"a classifier needs at least 2 classes, got {num_classes}")
    model = builder(in_shape=tuple(in_shape), num_classes=num_classes, **options)
    # Observations made from this module can be rebuilt from disk without the caller's help.
    model.gradinv_spec = {"name": name, "options": dict(options)}
    return model


__all__ = ["MODELS", "build_model", "model_options", "parse_option", "train_model"]
