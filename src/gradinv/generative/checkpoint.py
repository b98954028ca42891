"""Resumable training: everything an interrupted run needs to continue bit-exactly, as
`checkpoint.safetensors` (networks as G/..., D/...; Adam states as optG/<param>/<key>, optD/...;
the noise RNG as rng/noise) and `checkpoint.json`
(recipe, counters, losses). Written at every epoch end and on Ctrl-C; never pickle."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..errors import GradinvError
from .files import load_weights, read_json, read_metadata, read_tensors, write_json, write_tensors

JSON, WEIGHTS = "checkpoint.json", "checkpoint.safetensors"


@dataclass
class Progress:
    """Counters and running losses; `step` counts the steps done in the unfinished epoch."""

    epoch: int = 0
    step: int = 0
    losses: list[dict[str, float]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=lambda: {"d": 0.0, "g": 0.0})
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    sessions: int = 0


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for index, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"{prefix}/{index}/{key}"] = torch.as_tensor(value)
    return out


def _restore_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        head, index, key = (name.split("/") + ["", ""])[:3]
        if head == prefix:
            state.setdefault(int(index), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def _prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


def save_checkpoint(
    directory: str,
    recipe: dict[str, Any],
    progress: Progress,
    nets: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    noise: torch.Generator,
) -> None:
    """Tensors first, JSON second; both carry the counters so a torn pair is detected on load."""
    tensors: dict[str, torch.Tensor] = {"rng/noise": noise.get_state()}
    for name, net in nets.items():
        tensors |= {f"{name}/{k}": v for k, v in net.state_dict().items()}
    for name, opt in optimizers.items():
        tensors |= _optimizer_tensors(f"opt{name}", opt)
    marker = f"{progress.epoch}:{progress.step}"
    write_tensors(os.path.join(directory, WEIGHTS), tensors, metadata={"progress": marker})
    write_json(os.path.join(directory, JSON), {"recipe": recipe, "progress": asdict(progress)})


def load_checkpoint(
    directory: str,
    recipe: dict[str, Any],
    nets: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    noise: torch.Generator,
) -> Progress | None:
    """Restore a checkpoint of the same recipe into the given objects; None if there is none."""
    path = os.path.join(directory, JSON)
    if not os.path.isfile(path):
        return None
    data = read_json(path)
    recipe = json.loads(json.dumps(recipe))  # compare as stored: tuples become lists
    saved = data.get("recipe", {})
    diff = sorted(k for k in set(recipe) | set(saved) if recipe.get(k) != saved.get(k))
    if diff:
        change = ", ".join(f"{k}: {saved.get(k)!r} -> {recipe.get(k)!r}" for k in diff[:3])
        raise GradinvError(
            f"{directory} holds a checkpoint of another recipe ({change}); "
            "pass --overwrite to start again or choose another --out"
        )
    try:
        progress = Progress(**data["progress"])
    except (KeyError, TypeError) as exc:
        raise GradinvError(f"{path} is damaged ({exc}); pass --overwrite to start again") from None
    weights = os.path.join(directory, WEIGHTS)
    if read_metadata(weights).get("progress") != f"{progress.epoch}:{progress.step}":
        raise GradinvError(
            f"{weights} and {JSON} disagree (interrupted while saving?); "
            "pass --overwrite to start again"
        )
    tensors = read_tensors(weights)
    for name, net in nets.items():
        load_weights(net, _prefixed(name, tensors), f"{weights} ({name})")
    try:
        for name, opt in optimizers.items():
            _restore_optimizer(f"opt{name}", opt, tensors)
        noise.set_state(tensors["rng/noise"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise GradinvError(
            f"{weights} is damaged ({exc}); pass --overwrite to start again"
        ) from None
    return progress


def remove_checkpoint(directory: str) -> None:
    for name in (JSON, WEIGHTS):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.remove(path)
