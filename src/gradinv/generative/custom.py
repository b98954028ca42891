"""A user's own generator: `generator.json` names a Python file in the same directory, a class and
its keyword arguments; `generator.safetensors` holds the class's state_dict.

The file is imported, i.e. executed: only load directories whose code you trust (your own).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from typing import Any

import torch
import torch.nn as nn

from ..errors import GradinvError
from .files import load_weights, read_tensors
from .generator import Generator


class CustomGenerator(Generator):
    """Wraps the user's module: its own forward, its `stages` if it has them."""

    def __init__(self, module: nn.Module, output_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.module = module
        self.latent_dim = int(module.latent_dim)
        self.output_shape = output_shape

    @property
    def stages(self) -> nn.ModuleList | None:  # type: ignore[override]
        stages = getattr(self.module, "stages", None)
        return stages if isinstance(stages, nn.ModuleList) else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(z)


def _import_class(directory: str, file: object, name: object) -> type:
    if not isinstance(file, str) or not isinstance(name, str):
        raise GradinvError(f"{directory}/generator.json: custom needs 'file' and 'class' strings")
    rel = os.path.normpath(file)
    if os.path.isabs(rel) or rel.startswith(".."):
        raise GradinvError(f"{directory}/generator.json: 'file' must lie inside the directory")
    path = os.path.join(directory, rel)
    if not os.path.isfile(path):
        raise GradinvError(f"custom generator file not found: {path}")
    module_name = (
        "gradinv_custom_" + hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    )
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]  - runs the user's own code
    except Exception as exc:  # noqa: BLE001 - any error in user code becomes one line
        raise GradinvError(f"cannot import {path}: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise GradinvError(f"{path} defines no nn.Module class {name!r}")
    return cls


def _probe(gen: CustomGenerator, path: str) -> torch.Tensor:
    """Run two latents through the user's generator and check the contract."""
    z = torch.randn(2, gen.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            x = gen(z)
        except Exception as exc:  # noqa: BLE001
            raise GradinvError(f"{path}: forward(z) failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise GradinvError(f"{path}: forward(z) must return (B, C, H, W) images, got {shape}")
        if not torch.isfinite(x).all() or x.abs().max() > 1 + 1e-5:
            raise GradinvError(f"{path}: the generator's output must lie in [-1, 1] (end in tanh)")
        if gen.stages is not None:
            chained = gen.from_stage(z, 0)
            if chained.shape != x.shape or not torch.allclose(chained, x, atol=1e-5):
                raise GradinvError(f"{path}: running `stages` in order does not give forward(z)")
    return x


def load_custom(directory: str, record: dict[str, Any]) -> CustomGenerator:
    cls = _import_class(directory, record.get("file"), record.get("class"))
    kwargs = record.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise GradinvError(f"{directory}/generator.json: 'kwargs' must be an object")
    try:
        module = cls(**kwargs)
    except Exception as exc:  # noqa: BLE001
        raise GradinvError(
            f"{cls.__name__}(**kwargs) failed: {type(exc).__name__}: {exc}"
        ) from None
    latent = getattr(module, "latent_dim", None)
    if isinstance(latent, bool) or not isinstance(latent, int) or latent < 1:
        raise GradinvError(f"{cls.__name__} must set an integer attribute latent_dim >= 1")
    weights = os.path.join(directory, "generator.safetensors")
    load_weights(module, read_tensors(weights), weights)
    gen = CustomGenerator(module, (0, 0, 0)).eval()
    x = _probe(gen, f"{directory} ({cls.__name__})")
    gen.output_shape = tuple(int(v) for v in x.shape[1:])  # type: ignore[assignment]
    return gen
