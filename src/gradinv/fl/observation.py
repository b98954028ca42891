"""The threat model: an `Observation` holds exactly what an honest-but-curious server sees.

Attacks receive an Observation and nothing else, never the private batch."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import GradinvError
from .protocol import LOSSES, Protocol, Tensors

FORMAT_VERSION = 2


@dataclass
class Observation:
    """What the server sees after one round — and nothing else.

    model: the server's own frozen copy of the architecture (never the client's module): its
    trainable parameters are `parameters`, its frozen parameters `frozen`, its buffers the ones the
    server is given (BatchNorm statistics the server is not given are reset to their defaults).
    parameters: trainable parameters the client received, by name.
    update: the client's gradient (FedSGD) or weight delta (FedAvg), same names as `parameters`.
    buffers: the buffers the server is given (e.g. BatchNorm running statistics), possibly none.
    frozen: parameters that do not require grad (the server sent them; they are not updated).
    protocol: the client's hyper-parameters and training loss, known to the server.
    input_shape, num_classes, mean, std: the data interface; the model sees (x − mean) / std.
    batch_size, labels: only when the deployment reveals them (None otherwise).
    train_mode: whether the client ran the model in train mode (BatchNorm then uses batch statistics).
    model_spec: {"name", "options"} for built-in models, so a saved observation can be rebuilt.
    batch_stats: the client's batch statistics at each BatchNorm input ("<layer>.mean",
    "<layer>.var"), only when the deployment shares them (empty otherwise).
    defenses: the defenses the client applied, with their parameters (the server knows the
    protocol). secure_aggregation: the update is a sum over `num_clients` clients whose individual
    batch sizes and labels the server never sees. privacy: accounting facts (e.g. DP-SGD's ε).
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
    frozen: Tensors = field(default_factory=dict)
    defenses: list[dict[str, Any]] = field(default_factory=list)
    secure_aggregation: bool = False
    privacy: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_update(
        cls,
        model: nn.Module,
        parameters: Tensors,
        update: Tensors,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        buffers: Tensors | None = None,
        frozen_values: Tensors | None = None,
        **fields: Any,
    ) -> Observation:
        """An observation of an update computed elsewhere (e.g. captured from a Flower round):
        `model` is copied and sealed, `parameters` are the global weights the client received.
        Parameters of `model` absent from `parameters` are frozen ones (values from
        `frozen_values`, else the module's own)."""
        server = server_copy(model, {**(frozen_values or {}), **parameters}, buffers or {})
        trainable = set(parameters)
        for name, p in server.named_parameters():
            p.requires_grad_(name in trainable)
        named = dict(server.named_parameters())
        frozen = {k: v.detach().clone() for k, v in named.items() if k not in parameters}
        obs = cls(
            model=server,
            parameters={k: v.detach().clone() for k, v in parameters.items()},
            update={k: v.detach().clone().contiguous() for k, v in update.items()},
            input_shape=tuple(input_shape),  # type: ignore[arg-type]
            num_classes=int(num_classes),
            buffers={k: v.detach().clone() for k, v in (buffers or {}).items()},
            frozen=frozen,
            model_spec=fields.pop("model_spec", None) or getattr(model, "gradinv_spec", None),
            **fields,
        )
        return obs.validate()

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

        model = copy.deepcopy(self.model)  # nn.Module.to works in place: never move a shared one
        return replace(
            self,
            model=model.to(device, dtype) if dtype else model.to(device),
            parameters=move(self.parameters),
            update=move(self.update),
            buffers=move(self.buffers),
            frozen=move(self.frozen),
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
        for kind, tensors in (("parameter", self.parameters), ("frozen parameter", self.frozen),
                              ("buffer", self.buffers)):  # fmt: skip
            for k, v in tensors.items():
                if v.is_floating_point() and not torch.isfinite(v).all():
                    raise GradinvError(f"{kind} {k} contains NaN or Inf values")
        c = self.input_shape[0]
        if len(self.mean) != c or len(self.std) != c:
            raise GradinvError(
                f"mean/std need {c} channel values, got {len(self.mean)}/{len(self.std)}"
            )
        check_normalization(self.mean, self.std)
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise GradinvError(f"batch size must be an integer >= 1, got {self.batch_size!r}")
        if self.labels is not None:
            check_labels(self.labels, self.num_classes)
            if self.batch_size is not None and len(self.labels) != self.batch_size:
                raise GradinvError(f"{len(self.labels)} labels for batch size {self.batch_size}")
        return self

    # --- persistence (safetensors + JSON, never pickle) -----------------------------------------
    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        tensors = {f"param/{k}": v for k, v in self.parameters.items()}
        tensors |= {f"update/{k}": v for k, v in self.update.items()}
        tensors |= {f"buffer/{k}": v for k, v in self.buffers.items()}
        tensors |= {f"frozen/{k}": v for k, v in self.frozen.items()}
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
            "defenses": self.defenses,
            "secure_aggregation": self.secure_aggregation,
            "privacy": self.privacy,
        }
        with open(os.path.join(directory, "observation.json"), "w") as fh:
            json.dump(meta, fh, indent=2)

    @classmethod
    def load(
        cls,
        directory: str,
        model: nn.Module | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> Observation:
        """Read an observation; built-in models are rebuilt from the spec, others must be passed
        (`model=`), as must a custom training loss (`loss=`): nothing executable is read from disk."""
        meta_path = os.path.join(directory, "observation.json")
        try:
            with open(meta_path) as fh:
                meta = json.load(fh)
            tensors = load_file(os.path.join(directory, "observation.safetensors"))
        except FileNotFoundError as exc:
            raise GradinvError(f"not an observation directory: {exc.filename} missing") from None
        except (
            json.JSONDecodeError,
            SafetensorError,
            OSError,
            UnicodeDecodeError,
            RuntimeError,
        ) as exc:
            raise GradinvError(f"corrupt observation in {directory}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") not in (1, FORMAT_VERSION):
            raise GradinvError(f"{meta_path}: unsupported observation format")
        try:
            shape = tuple(int(v) for v in meta["input_shape"])
            num_classes = int(meta["num_classes"])
            proto = dict(meta["protocol"])
            loss_name = proto.pop("loss", "ce")
            if loss_name not in LOSSES:
                if loss is None:
                    raise GradinvError(
                        f"observation was made with the custom loss {loss_name!r}: pass loss=..."
                    )
                loss_name = loss
            protocol = Protocol(**proto, loss=loss_name)
            spec = meta.get("model_spec")
            if model is None:
                if not spec:
                    raise GradinvError("observation was made with a custom model: pass model=...")
                from ..models import build_model  # the models sit above fl in the pipeline

                model = build_model(spec["name"], shape, num_classes, **spec.get("options", {}))
                if meta.get("defenses"):  # wrappers a defense put around the model (PRECODE)
                    from ..defenses import Defense

                    for d in meta["defenses"]:
                        model = Defense.from_dict(d).wrap_model(model)
            batch_size = meta.get("batch_size")
            obs = cls.from_update(
                model,
                _prefixed(tensors, "param/"),
                _prefixed(tensors, "update/"),
                shape,  # type: ignore[arg-type]
                num_classes,
                buffers=_prefixed(tensors, "buffer/"),
                frozen_values=_prefixed(tensors, "frozen/"),
                protocol=protocol,
                mean=tuple(float(v) for v in meta["mean"]),
                std=tuple(float(v) for v in meta["std"]),
                batch_size=None if batch_size is None else int(batch_size),
                labels=tensors.get("labels"),
                train_mode=bool(meta.get("train_mode", True)),
                model_spec=spec,
                num_clients=int(meta.get("num_clients", 1)),
                batch_stats=_prefixed(tensors, "batchstat/"),
                defenses=list(meta.get("defenses", [])),
                secure_aggregation=bool(meta.get("secure_aggregation", False)),
                privacy=dict(meta.get("privacy", {})),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            if isinstance(exc, GradinvError):
                raise
            raise GradinvError(f"{meta_path}: malformed field ({exc})") from None
        return obs


def _prefixed(tensors: Tensors, prefix: str) -> Tensors:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def check_normalization(mean: Sequence[float], std: Sequence[float]) -> None:
    """mean finite, std finite and > 0: anything else makes every attack return NaN images."""
    for m in mean:
        if not math.isfinite(float(m)):
            raise GradinvError(f"normalisation mean must be finite, got {m}")
    for s in std:
        if not (math.isfinite(float(s)) and float(s) > 0):
            raise GradinvError(f"normalisation std must be finite and > 0, got {s}")


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Integer class indices in 0..num_classes−1."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise GradinvError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise GradinvError(f"labels must be a 1-d tensor, got shape {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise GradinvError(f"labels outside 0..{num_classes - 1}")


def server_copy(model: nn.Module, parameters: Tensors, buffers: Tensors) -> nn.Module:
    """The server's sealed copy of the architecture: a deep copy holding the received parameters
    and only the given buffers; BatchNorm statistics the server was not given are reset to their
    initial values (the server cannot know them). Nothing in it aliases the client's tensors."""
    server = copy.deepcopy(model)
    for module in server.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            module.reset_running_stats()
    state = dict(server.state_dict(keep_vars=True))
    with torch.no_grad():
        for k, v in {**parameters, **buffers}.items():
            if k not in state:
                raise GradinvError(f"observation tensor {k!r} does not exist in the model")
            if tuple(v.shape) != tuple(state[k].shape):
                raise GradinvError(
                    f"shape mismatch for {k}: observation {tuple(v.shape)}, "
                    f"model {tuple(state[k].shape)}"
                )
            state[k].copy_(v.to(state[k].dtype))
    return server.eval()
