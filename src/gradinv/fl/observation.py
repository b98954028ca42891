"""The threat model: an `Observation` holds exactly what an honest-but-curious server sees.

Attacks receive an Observation and nothing else, never the private batch."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import GradinvError
from .protocol import Protocol, Tensors

FORMAT_VERSION = 1


@dataclass
class Observation:
    """What the server sees after one round.

    model: the architecture (the server chose it); its own weights are ignored, `parameters` count.
    parameters: trainable parameters the client received, by name.
    update: the client's gradient (FedSGD) or weight delta (FedAvg), same names as `parameters`.
    buffers: the buffers the server is given (e.g. BatchNorm running statistics), possibly none.
    protocol: the client's hyper-parameters, known to the server.
    input_shape, num_classes, mean, std: the data interface; the model sees (x − mean) / std.
    batch_size, labels: only when the deployment reveals them (None otherwise).
    train_mode: whether the client ran the model in train mode (BatchNorm then uses batch statistics).
    model_spec: {"name", "options"} for built-in models, so a saved observation can be rebuilt.
    batch_stats: the client's batch statistics at each BatchNorm input ("<layer>.mean",
    "<layer>.var"), only when the deployment shares them (empty otherwise).
    """

    model: nn.Module
    parameters: Tensors
    update: Tensors
    input_shape: tuple[int, int, int]
    num_classes: int
    buffers: Tensors = field(default_factory=dict)
    protocol: Protocol = field(default_factory=Protocol)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    batch_size: int | None = None
    labels: torch.Tensor | None = None
    train_mode: bool = True
    model_spec: dict[str, Any] | None = None
    num_clients: int = 1
    batch_stats: Tensors = field(default_factory=dict)

    # --- convenience ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(iter(self.update.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.update.values())).dtype

    def _stat(self, values: Sequence[float]) -> torch.Tensor:
        t = torch.tensor(values, device=self.device, dtype=self.dtype)
        return t.view(1, -1, 1, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] pixels -> model input space."""
        return (x - self._stat(self.mean)) / self._stat(self.std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input space -> [0,1] pixels (unclamped)."""
        return x * self._stat(self.std) + self._stat(self.mean)

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds of valid images in model input space."""
        zeros = torch.zeros(1, self.input_shape[0], 1, 1, device=self.device, dtype=self.dtype)
        return self.normalize(zeros), self.normalize(zeros + 1)

    def trainable(self) -> Tensors:
        """Fresh leaf copies of the parameters that require grad, for differentiating through."""
        return {k: v.detach().clone().requires_grad_(True) for k, v in self.parameters.items()}

    def without(self, *, labels: bool = False, batch_size: bool = False) -> Observation:
        """A copy that hides the labels and/or the batch size from the server."""
        return replace(
            self,
            labels=None if labels else self.labels,
            batch_size=None if batch_size else self.batch_size,
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Observation:
        def move(d: Tensors) -> Tensors:
            return {
                k: v.to(device, dtype if (dtype is not None and v.is_floating_point()) else v.dtype)
                for k, v in d.items()
            }

        return replace(
            self,
            # a copy: nn.Module.to works in place and would move the client's own model too
            model=copy.deepcopy(self.model).to(device, dtype)
            if dtype
            else copy.deepcopy(self.model).to(device),
            parameters=move(self.parameters),
            update=move(self.update),
            buffers=move(self.buffers),
            batch_stats=move(self.batch_stats),
            labels=None if self.labels is None else self.labels.to(device),
        )

    # --- validation ------------------------------------------------------------------------------
    def validate(self) -> Observation:
        """Check consistency; every problem is a GradinvError naming it."""
        if not self.update:
            raise GradinvError("observation holds no update tensors")
        names = dict(self.model.named_parameters())
        for k, v in self.parameters.items():
            if k not in names:
                raise GradinvError(f"observation parameter {k!r} does not exist in the model")
            if tuple(v.shape) != tuple(names[k].shape):
                raise GradinvError(
                    f"shape mismatch for {k}: observation {tuple(v.shape)}, model {tuple(names[k].shape)}"
                )
        if set(self.update) != set(self.parameters):
            missing = sorted(set(self.parameters) ^ set(self.update))[:3]
            raise GradinvError(f"update and parameters name different tensors (e.g. {missing})")
        for k, g in self.update.items():
            if g.shape != self.parameters[k].shape:
                raise GradinvError(
                    f"update {k} has shape {tuple(g.shape)}, parameter has {tuple(self.parameters[k].shape)}"
                )
            if not torch.isfinite(g).all():
                raise GradinvError(f"update {k} contains NaN or Inf values; nothing to invert")
        if len(self.mean) != self.input_shape[0] or len(self.std) != self.input_shape[0]:
            raise GradinvError(f"mean/std need {self.input_shape[0]} channel values")
        if self.batch_size is not None and self.batch_size < 1:
            raise GradinvError(f"batch size must be >= 1, got {self.batch_size}")
        if self.labels is not None:
            if self.batch_size is not None and len(self.labels) != self.batch_size:
                raise GradinvError(f"{len(self.labels)} labels for batch size {self.batch_size}")
            if len(self.labels) and (
                self.labels.min() < 0 or self.labels.max() >= self.num_classes
            ):
                raise GradinvError(f"labels outside 0..{self.num_classes - 1}")
        return self

    # --- persistence (safetensors + JSON, never pickle) -----------------------------------------
    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        tensors = {f"param/{k}": v for k, v in self.parameters.items()}
        tensors |= {f"update/{k}": v for k, v in self.update.items()}
        tensors |= {f"buffer/{k}": v for k, v in self.buffers.items()}
        tensors |= {f"batchstat/{k}": v for k, v in self.batch_stats.items()}
        if self.labels is not None:
            tensors["labels"] = self.labels
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
            os.path.join(directory, "observation.safetensors"),
        )
        meta = {
            "format": FORMAT_VERSION,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "protocol": self.protocol.to_dict(),
            "mean": list(self.mean),
            "std": list(self.std),
            "batch_size": self.batch_size,
            "train_mode": self.train_mode,
            "model_spec": self.model_spec,
            "num_clients": self.num_clients,
        }
        with open(os.path.join(directory, "observation.json"), "w") as fh:
            json.dump(meta, fh, indent=2)

    @classmethod
    def load(cls, directory: str, model: nn.Module | None = None) -> Observation:
        """Read an observation; built-in models are rebuilt from the spec, others must be passed."""
        meta_path = os.path.join(directory, "observation.json")
        try:
            with open(meta_path) as fh:
                meta = json.load(fh)
            tensors = load_file(os.path.join(directory, "observation.safetensors"))
        except FileNotFoundError as exc:
            raise GradinvError(f"not an observation directory: {exc.filename} missing") from None
        except (json.JSONDecodeError, SafetensorError, OSError, UnicodeDecodeError) as exc:
            raise GradinvError(f"corrupt observation in {directory}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise GradinvError(f"{meta_path}: unsupported observation format")
        try:
            shape = tuple(int(v) for v in meta["input_shape"])
            num_classes = int(meta["num_classes"])
            protocol = Protocol(**meta["protocol"])
            spec = meta.get("model_spec")
            if model is None:
                if not spec:
                    raise GradinvError("observation was made with a custom model: pass model=...")
                from ..models import build_model

                model = build_model(spec["name"], shape, num_classes, **spec.get("options", {}))
            batch_size = meta.get("batch_size")
            obs = cls(
                model=model,
                parameters=_prefixed(tensors, "param/"),
                update=_prefixed(tensors, "update/"),
                buffers=_prefixed(tensors, "buffer/"),
                input_shape=shape,  # type: ignore[arg-type]
                num_classes=num_classes,
                protocol=protocol,
                mean=tuple(float(v) for v in meta["mean"]),
                std=tuple(float(v) for v in meta["std"]),
                batch_size=None if batch_size is None else int(batch_size),
                labels=tensors.get("labels"),
                train_mode=bool(meta.get("train_mode", True)),
                model_spec=spec,
                num_clients=int(meta.get("num_clients", 1)),
                batch_stats=_prefixed(tensors, "batchstat/"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, GradinvError):
                raise
            raise GradinvError(f"{meta_path}: malformed field ({exc})") from None
        return obs.validate()


def _prefixed(tensors: Tensors, prefix: str) -> Tensors:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
