"""The user's own model: `path/to/file.py:ClassName` (constructor arguments from --model-opt) or a
TorchScript file (`model.pt`). Models returning a tuple or a dict get their logits picked by
`output` (an index or a key)."""

from __future__ import annotations

import copy
import inspect
import os
from typing import Any

import torch
import torch.nn as nn

from ..errors import GradinvError
from ..options import parse_text
from ..usercode import is_spec, load_object

TORCHSCRIPT = (".pt", ".pth", ".ts", ".torchscript")


def is_user_model(name: str) -> bool:
    return is_spec(name) or name.lower().endswith(TORCHSCRIPT)


def user_model_options(spec: str) -> dict[str, Any]:
    """Constructor arguments of a user class with their defaults (None when there is none)."""
    if not is_spec(spec):
        return {}
    cls = load_object(spec, "model")
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def parse_user_option(spec: str, key: str, value: str) -> Any:
    options = user_model_options(spec)
    if key not in options:
        raise GradinvError(
            f"model {spec!r} takes no argument {key!r}; it takes: {', '.join(options) or 'none'}"
        )
    return parse_text(value, options[key], f"model option {key}")


class PickOutput(nn.Module):
    """Logits from a model whose forward returns a tuple/list (pick an index) or a dict (a key)."""

    def __init__(self, model: nn.Module, output: str) -> None:
        super().__init__()
        self.model, self.output = model, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pick(self.model(x), self.output)


def pick(out: Any, output: str | None) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        if output is None or output not in out:
            raise GradinvError(
                f"the model returns a dict with keys {sorted(out)}; name the logits with "
                "--model-output KEY"
            )
        return out[output]
    if isinstance(out, (tuple, list)):
        if (
            output is None
            or not output.lstrip("-").isdigit()
            or not -len(out) <= int(output) < len(out)
        ):
            raise GradinvError(
                f"the model returns a {type(out).__name__} of {len(out)} outputs; pick the logits "
                f"with --model-output INDEX (0..{len(out) - 1})"
            )
        return out[int(output)]
    raise GradinvError(f"the model returns {type(out).__name__}; expected a logits tensor")


def load_user_model(
    spec: str, in_shape: tuple[int, int, int], num_classes: int, output: str | None = None, /,
    **options: Any,
) -> nn.Module:  # fmt: skip
    """Build the user's model and check, on one dummy input, that it returns (1, num_classes)
    logits; every problem is one line naming it."""
    if spec.lower().endswith(TORCHSCRIPT) and not is_spec(spec):
        if options:
            raise GradinvError("a TorchScript model takes no --model-opt (it is already built)")
        if not os.path.isfile(spec):
            raise GradinvError(f"model file not found: {spec}")
        try:
            model = torch.jit.load(spec, map_location="cpu")
        except (RuntimeError, ValueError, OSError) as exc:
            raise GradinvError(
                f"cannot load TorchScript model {spec}: {str(exc).splitlines()[0]}"
            ) from None
    else:
        cls = load_object(spec, "model")
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)) and not callable(cls):
            raise GradinvError(f"model {spec!r} is not an nn.Module class or a factory")
        try:
            model = cls(**options)
        except TypeError as exc:
            raise GradinvError(f"model {spec!r}: cannot construct it: {exc}") from None
        if not isinstance(model, nn.Module):
            raise GradinvError(f"model {spec!r} built a {type(model).__name__}, not an nn.Module")
    if output is not None:
        model = PickOutput(model, output)
    check_output(model, in_shape, num_classes, spec)
    return model


def check_output(model: nn.Module, in_shape: tuple[int, ...], num_classes: int, name: str) -> None:
    """Dummy inputs through the model in eval mode (one) and in train mode on a copy (two:
    BatchNorm needs more than one value per channel there): logits of shape (n, num_classes)."""
    p = next(model.parameters(), None)
    for training in (False, True):
        n = 2 if training else 1
        x = torch.zeros(n, *in_shape, dtype=p.dtype if p is not None else torch.float32)
        net = copy.deepcopy(model) if training else model
        was = net.training
        net.train(training)
        try:
            with torch.no_grad():
                out = net(x)
        except GradinvError:
            raise
        except Exception as exc:  # the user's forward may raise anything
            mode = "train" if training else "eval"
            raise GradinvError(
                f"model {name!r} fails on a {tuple(in_shape)} input in {mode} mode: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        finally:
            net.train(was)
        out = pick(out, None) if not isinstance(out, torch.Tensor) else out
        if out.ndim != 2 or out.shape != (n, num_classes):
            raise GradinvError(
                f"model {name!r} returns {tuple(out.shape)} for {n} input(s); expected "
                f"({n}, {num_classes}) logits (the data has that many classes)"
            )
