"""Reading and writing the generator's files: atomic writes, one-line errors for damaged files."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import GradinvError


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write through a temporary file so a crash never leaves half a JSON file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise GradinvError(f"{path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GradinvError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise GradinvError(f"{path} must hold a JSON object")
    return data


def write_tensors(
    path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    tmp = path + ".tmp"
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(tmp, path)


def read_tensors(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (never pickle); a damaged file is a one-line error."""
    if not os.path.isfile(path):
        raise GradinvError(f"{path} not found")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GradinvError(f"{path} is not a readable safetensors file ({exc})") from None


def read_metadata(path: str) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GradinvError(f"{path} is not a readable safetensors file ({exc})") from None


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Load a state dict whose keys and shapes must match the module exactly."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise GradinvError(
            f"{what} does not match the architecture: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for key, value in expected.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise GradinvError(
                f"{what}: {key} has shape {tuple(tensors[key].shape)}, the architecture "
                f"expects {tuple(value.shape)}"
            )
    module.load_state_dict(tensors, strict=True)
