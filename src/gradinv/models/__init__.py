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
from .user import check_output, is_user_model, load_user_model, parse_user_option

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
    if is_user_model(name):
        return parse_user_option(name, key, value)
    options = model_options(name)
    if key not in options:
        raise GradinvError(
            f"model {name!r} has no option {key!r}; valid options: {', '.join(options) or 'none'}"
        )
    return parse_text(value, options[key], f"model option {key}")


def build_model(
    name: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    output: str | None = None,
    /,
    **options: Any,
) -> nn.Module:
    """Build a registered model, or the user's (`file.py:Class` or a TorchScript file), for
    inputs of shape (C, H, W). `output` picks the logits of a model returning a tuple or dict."""
    if num_classes < 2:
        raise GradinvError(f"a classifier needs at least 2 classes, got {num_classes}")
    if is_user_model(name):
        # user models carry no spec: a saved observation never re-runs the user's file
        return load_user_model(name, tuple(in_shape), num_classes, output, **options)
    builder = MODELS.get(name)
    valid = model_options(name)
    for key in options:
        if key not in valid:
            raise GradinvError(
                f"model {name!r} has no option {key!r}; valid options: {', '.join(valid) or 'none'}"
            )
    for key, value in options.items():
        if key == "width" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise GradinvError(f"model {name!r}: width must be an integer >= 1, got {value!r}")
    try:
        model = builder(in_shape=tuple(in_shape), num_classes=num_classes, **options)
        check_output(model, tuple(in_shape), num_classes, name)
    except (GradinvError, RuntimeError, ValueError) as exc:
        smallest = min_image_size(name, in_shape[0], num_classes, options)
        if smallest is None or smallest <= max(in_shape[1:]):
            if isinstance(exc, GradinvError):
                raise
            raise GradinvError(f"model {name!r}: {str(exc).splitlines()[0]}") from None
        raise GradinvError(
            f"model {name!r} cannot take {in_shape[1]}x{in_shape[2]} images; the smallest size it "
            f"takes is {smallest} (--image-size {smallest})"
        ) from None
    # Observations made from this module can be rebuilt from disk without the caller's help.
    model.gradinv_spec = {"name": name, "options": dict(options)}
    return model


def min_image_size(
    name: str, channels: int, num_classes: int, options: dict[str, Any], limit: int = 128
) -> int | None:
    """The smallest square input a built-in model accepts (None if none up to `limit`)."""
    builder = MODELS.get(name)
    for size in range(1, limit + 1):
        try:
            model = builder(in_shape=(channels, size, size), num_classes=num_classes, **options)
            check_output(model, (channels, size, size), num_classes, name)
            return size
        except (GradinvError, RuntimeError, ValueError):
            continue
    return None


__all__ = ["MODELS", "build_model", "model_options", "parse_option", "train_model"]
