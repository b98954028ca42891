"""One attack run end to end: data → client update → attack → metrics. Used by the CLI and the
experiments; the attack only ever sees the Observation."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .attacks import ATTACKS, Reconstruction, make_attack
from .data import batch_indices, load_dataset
from .errors import GradinvError
from .fl import Observation, Protocol, aggregate, observe
from .labels import STRATEGIES
from .metrics import evaluate
from .models import build_model, train_model

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class RunConfig:
    """Everything needed to rerun an attack (saved as config.yaml)."""

    attack: str = "ig"
    model: str = "lenet"
    data: str = "sample"
    channels: int | None = None  # convert the data to 1 or 3 channels (None: as stored)
    batch_size: int = 1
    clients: int = 1  # K clients, each with batch_size images; the server sees the aggregate
    composition: str = "unique"
    labels: str = "known"  # known | joint | a label strategy name
    share_batch_size: bool = True
    image_size: int = 32
    iterations: int | None = None  # None: the attack's default
    restarts: int | None = None
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    protocol: str = "fedsgd"
    local_epochs: int = 1
    local_lr: float = 0.01
    local_batch_size: int | None = None
    train_epochs: int = 0
    normalize: bool = True
    model_options: dict[str, Any] = field(default_factory=dict)
    attack_options: dict[str, Any] = field(default_factory=dict)
    priors: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["priors"] = [list(p) for p in self.priors]
        return d


@dataclass
class RunResult:
    config: RunConfig
    metrics: dict[str, Any]
    reconstruction: Reconstruction
    images: torch.Tensor  # the private batch, [0,1], cpu
    labels: torch.Tensor
    observation: Observation


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GradinvError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise GradinvError(f"unknown device {name!r}; choose from: auto, cpu, cuda")
    return torch.device(name)


def _check(config: RunConfig) -> None:
    ATTACKS.get(config.attack)
    if config.dtype not in DTYPES:
        raise GradinvError(f"unknown dtype {config.dtype!r}; choose from: {', '.join(DTYPES)}")
    if config.labels not in ("known", "joint") and config.labels not in STRATEGIES:
        choices = ["known", "joint", *STRATEGIES.names()]
        raise GradinvError(
            f"unknown labels mode {config.labels!r}; choose from: {', '.join(choices)}"
        )
    if config.image_size < 4:
        raise GradinvError(f"image size must be at least 4, got {config.image_size}")
    if config.clients < 1:
        raise GradinvError(f"clients must be >= 1, got {config.clients}")
    if config.train_epochs < 0:
        raise GradinvError(f"train epochs must be >= 0, got {config.train_epochs}")


def attack_kwargs(config: RunConfig) -> dict[str, Any]:
    """Options for the attack's constructor: the generic CLI flags where the attack has them."""
    fields = ATTACKS.get(config.attack).options()
    kw: dict[str, Any] = {"seed": config.seed}
    if config.iterations is not None and "iterations" in fields:
        kw["iterations"] = config.iterations
    if config.restarts is not None and "restarts" in fields:
        kw["restarts"] = config.restarts
    if config.labels != "known" and "label_strategy" in fields:
        kw["label_strategy"] = config.labels
    if config.priors:
        if "priors" not in fields:
            raise GradinvError(f"attack {config.attack!r} does not use priors")
        kw["priors"] = tuple(tuple(p) for p in config.priors)
    for key in ("iterations", "restarts"):
        if getattr(config, key) is not None and key not in fields:
            raise GradinvError(f"attack {config.attack!r} has no {key} (it is not iterative)")
    if "progress" in config.attack_options:
        raise GradinvError("'progress' is not an attack option; use --progress/--no-progress")
    return kw | config.attack_options


def prepare(
    config: RunConfig, progress: bool = True
) -> tuple[Observation, torch.Tensor, torch.Tensor]:
    """Draw the private batch, build (and optionally train) the model, run the client round.
    Returns the observation the server gets (labels/batch size hidden as configured), the private
    images ([0,1], cpu) and labels."""
    _check(config)
    device, dtype = resolve_device(config.device), DTYPES[config.dtype]
    dataset = load_dataset(config.data, config.channels)
    total = config.batch_size * config.clients
    idx = batch_indices(dataset, total, config.composition, config.seed)
    images = dataset.load(idx.tolist(), config.image_size)
    labels = torch.as_tensor(dataset.labels[idx])
    c = images.shape[1]
    mean, std = (
        dataset.channel_stats(config.image_size) if config.normalize else ([0.0] * c, [1.0] * c)
    )
    torch.manual_seed(config.seed)
    in_shape = (c, config.image_size, config.image_size)
    model = build_model(config.model, in_shape, dataset.num_classes, **config.model_options)
    model = model.to(device, dtype)
    if config.train_epochs:
        train_model(
            model,
            dataset,
            config.train_epochs,
            config.image_size,
            mean,
            std,
            seed=config.seed,
            exclude=idx.tolist(),
            progress=progress,
        )
    protocol = Protocol(
        config.protocol, config.local_epochs, config.local_lr, config.local_batch_size
    )
    b = config.batch_size
    rounds = [
        observe(
            model,
            images[k * b : (k + 1) * b].to(device, dtype),
            labels[k * b : (k + 1) * b].to(device),
            protocol=protocol,
            mean=mean,
            std=std,
            share_labels=config.labels == "known",
            share_batch_size=config.share_batch_size,
            model_spec={"name": config.model, "options": dict(config.model_options)},
        )  # fmt: skip
        for k in range(config.clients)
    ]
    return (rounds[0] if len(rounds) == 1 else aggregate(rounds)), images, labels


def run(config: RunConfig, progress: bool = True) -> RunResult:
    """Run one attack and score it against the private batch."""
    _check(config)
    kwargs = attack_kwargs(config)
    attack = make_attack(config.attack, progress=progress, **kwargs)
    obs, images, labels = prepare(config, progress)
    start = time.perf_counter()
    rec = attack.reconstruct(obs)
    elapsed = time.perf_counter() - start
    if rec.images.shape != images.shape:
        raise GradinvError(
            f"attack returned {tuple(rec.images.shape)} images for a batch of {tuple(images.shape)}"
            " (batch size misestimated?)"
        )
    scores = evaluate(rec.images, images, rec.labels if config.labels != "known" else None, labels)
    metrics = {
        "attack": config.attack,
        "model": config.model,
        "data": config.data,
        "batch_size": config.batch_size,
        "clients": config.clients,
        "composition": config.composition,
        "seed": config.seed,
        "protocol": config.protocol,
        "labels_mode": config.labels,
        **scores,
        "labels_true": sorted(int(v) for v in labels),
        "labels_recovered": None if rec.labels is None else sorted(int(v) for v in rec.labels),
        "iterations": len(rec.loss_history) or None,
        "time_s": round(elapsed, 3),
        "info": {k: _jsonable(v) for k, v in rec.info.items()},
    }
    return RunResult(config, metrics, rec, images, labels, obs)


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v
