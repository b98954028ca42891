"""One attack run end to end: data → client update → attack → metrics. Used by the CLI, the sweeps
and the experiments; the attack only ever sees the Observation."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .attacks import ATTACKS, Reconstruction, make_attack
from .data import batch_indices, load_dataset
from .errors import GradinvError
from .fl import Observation, Protocol, aggregate, check_normalization, observe
from .labels import STRATEGIES
from .metrics import evaluate, label_accuracy
from .models import build_model, train_model
from .models.user import is_user_model

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class RunConfig:
    """Everything needed to rerun an attack (saved as config.yaml)."""

    attack: str = "auto"
    model: str = "lenet"
    data: str = "sample"
    channels: int | None = None  # convert the data to 1 or 3 channels (None: as stored)
    batch_size: int = 1
    clients: int = 1  # K clients, each with batch_size images; the server sees the aggregate
    secure_aggregation: bool = False  # the server sees only the sum: no sizes, no labels
    composition: str = "unique"
    labels: str = "known"  # known | joint | a label strategy name
    share_batch_size: bool = True
    image_size: int = 32
    iterations: int | None = None  # None: the attack's default
    restarts: int | None = None
    seed: int = 0  # the private batch and the attack's random starts
    model_seed: int = 0  # the model's initialisation (one model can serve many batches)
    dtype: str = "float32"
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads (None: GRADINV_THREADS or torch's default)
    protocol: str = "fedsgd"
    local_epochs: int = 1
    local_lr: float = 0.01
    local_batch_size: int | None = None
    loss: str = "ce"  # ce | mse | file.py:function
    train_epochs: int = 0
    normalize: bool = True
    # the deployment's normalisation, one value per channel (None: the data's channel statistics)
    norm_mean: list[float] | None = None
    norm_std: list[float] | None = None
    model_output: str | None = None  # logits of a model returning a tuple (index) or dict (key)
    observation: str | None = None  # attack this saved observation instead of simulating a round
    truth: str | None = None  # the private batch of a saved observation, for scoring only
    model_options: dict[str, Any] = field(default_factory=dict)
    attack_options: dict[str, Any] = field(default_factory=dict)
    priors: list[tuple[str, float]] = field(default_factory=list)
    defenses: list[str] = field(default_factory=list)  # NAME[:KEY=VALUE,...] specs, in order

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["priors"] = [list(p) for p in self.priors]
        return d


@dataclass
class RunResult:
    config: RunConfig
    metrics: dict[str, Any]
    reconstruction: Reconstruction
    images: torch.Tensor | None  # the private batch, [0,1], cpu (None: a saved observation alone)
    labels: torch.Tensor | None
    observation: Observation


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GradinvError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise GradinvError(f"unknown device {name!r}; choose from: auto, cpu, cuda")
    return torch.device(name)


def resolve_threads(threads: int | None) -> int:
    """The intra-op thread count a run uses: the given one, else GRADINV_THREADS, else torch's.
    Results are deterministic for a fixed count (recorded in config.yaml)."""
    if threads is None:
        env = os.environ.get("GRADINV_THREADS", "")
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise GradinvError(f"GRADINV_THREADS={env!r} must be an integer >= 1") from None
        else:
            return torch.get_num_threads()
    if threads < 1:
        raise GradinvError(f"threads must be >= 1, got {threads}")
    return threads


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op threads and, as far as possible, the BLAS libraries' (scipy/numpy do
    the closed forms' linear algebra: extra BLAS threads on a busy machine slow them ~50x)."""
    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except ImportError:  # scikit-learn brings it; without it BLAS keeps its default
        pass
    return n


def check(config: RunConfig) -> None:
    """Every setting, checked before any work; each problem is one GradinvError."""
    ATTACKS.get(config.attack)
    if config.dtype not in DTYPES:
        raise GradinvError(f"unknown dtype {config.dtype!r}; choose from: {', '.join(DTYPES)}")
    if config.labels not in ("known", "joint") and config.labels not in STRATEGIES:
        choices = ["known", "joint", *STRATEGIES.names()]
        raise GradinvError(
            f"unknown labels mode {config.labels!r}; choose from: {', '.join(choices)}"
        )
    for name in ("seed", "model_seed", "train_epochs"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise GradinvError(f"{name.replace('_', ' ')} must be an integer >= 0, got {value!r}")
    for name in ("batch_size", "clients", "image_size", "local_epochs"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GradinvError(f"{name.replace('_', ' ')} must be an integer >= 1, got {value!r}")
    for name in ("iterations", "restarts"):
        value = getattr(config, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise GradinvError(f"{name} must be >= 1, got {value!r}")
    if config.truth and not config.observation:
        raise GradinvError("--truth scores an attack on a saved observation: give --observation")
    if config.observation and not os.path.isdir(config.observation):
        raise GradinvError(f"observation directory not found: {config.observation}")
    if config.image_size < 4:
        raise GradinvError(f"image size must be at least 4, got {config.image_size}")
    if config.channels is not None and config.channels not in (1, 3):
        raise GradinvError(f"channels must be 1 or 3, got {config.channels}")
    if config.secure_aggregation and config.clients < 2:
        raise GradinvError("secure aggregation needs at least 2 clients (--clients K)")
    if (config.norm_mean is None) != (config.norm_std is None):
        raise GradinvError("give both --norm-mean and --norm-std (or neither)")
    if config.norm_mean is not None:
        if len(config.norm_mean) != len(config.norm_std or []):
            n_mean, n_std = len(config.norm_mean), len(config.norm_std or [])
            raise GradinvError(f"--norm-mean has {n_mean} values, --norm-std {n_std}")
        check_normalization(config.norm_mean, config.norm_std or [])
    if not isinstance(config.defenses, (list, tuple)):
        raise GradinvError(f"defenses must be a list of NAME[:KEY=VALUE,...] specs, got "
                           f"{config.defenses!r}")  # fmt: skip
    make_defenses(config)  # a bad spec is one line before any work
    resolve_threads(config.threads)
    resolve_device(config.device)


def attack_kwargs(config: RunConfig) -> dict[str, Any]:
    """Options for the attack's constructor: the generic flags where the attack has them."""
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


def make_protocol(config: RunConfig) -> Protocol:
    loss: Any = config.loss
    if isinstance(loss, str) and ":" in loss:
        from .usercode import load_function

        loss = load_function(loss, "loss")
    return Protocol(config.protocol, config.local_epochs, config.local_lr,
                    config.local_batch_size, loss)  # fmt: skip


def make_defenses(config: RunConfig) -> list[Any]:
    if not config.defenses:
        return []
    from .defenses import parse_defense

    return [parse_defense(spec) for spec in config.defenses]


def prepare(
    config: RunConfig, progress: bool = True
) -> tuple[Observation, torch.Tensor, torch.Tensor]:
    """Draw the private batch, build (and optionally train) the model, run the client round(s).
    Returns the observation the server gets (labels/batch size hidden as configured), the private
    images ([0,1], cpu) and labels."""
    check(config)
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
    if config.norm_mean is not None:  # the deployment fixes it (e.g. an inverter was trained so)
        if len(config.norm_mean) != c:
            raise GradinvError(f"--norm-mean/--norm-std need {c} channel values")
        mean, std = [float(v) for v in config.norm_mean], [float(v) for v in config.norm_std or []]
    protocol = make_protocol(config)
    defenses = make_defenses(config)
    torch.manual_seed(config.model_seed)
    in_shape = (c, config.image_size, config.image_size)
    model = build_model(config.model, in_shape, dataset.num_classes, config.model_output,
                        **config.model_options)  # fmt: skip
    for d in defenses:
        model = d.wrap_model(model)
    model = model.to(device, dtype)
    if config.train_epochs:
        train_model(model, dataset, config.train_epochs, config.image_size, mean, std,
                    seed=config.model_seed, exclude=idx.tolist(), progress=progress)  # fmt: skip
    b = config.batch_size
    rounds = [
        observe(
            model,
            images[k * b : (k + 1) * b].to(device, dtype),
            labels[k * b : (k + 1) * b].to(device),
            protocol=protocol,
            mean=mean,
            std=std,
            share_labels=config.labels == "known" and not config.secure_aggregation,
            share_batch_size=config.share_batch_size,
            model_spec={"name": config.model, "options": dict(config.model_options)},
            defenses=defenses,
            seed=config.seed * 1009 + k,
        )  # fmt: skip
        for k in range(config.clients)
    ]
    if len(rounds) == 1:
        return rounds[0], images, labels
    return aggregate(rounds, secure=config.secure_aggregation), images, labels


def run(config: RunConfig, progress: bool = True) -> RunResult:
    """Run one attack and score it against the private batch (the score never feeds back)."""
    check(config)
    config.threads = use_threads(config.threads)
    attack = make_attack(config.attack, progress=progress, **attack_kwargs(config))
    if config.observation:
        obs = load_observation(config)
        images, labels = load_truth(config.truth) if config.truth else (None, None)
    else:
        obs, images, labels = prepare(config, progress)
    start = time.perf_counter()
    rec = attack.reconstruct(obs)
    elapsed = time.perf_counter() - start
    if images is None:
        metrics = unscored(config, rec, obs, elapsed)
    else:
        metrics = score(config, rec, images, labels, elapsed, obs)
    return RunResult(config, metrics, rec, images, labels, obs)


def load_observation(config: RunConfig) -> Observation:
    """A saved observation; a custom model (file.py:Class or TorchScript) or loss comes from the
    config, since nothing executable is ever read from the observation's directory."""
    path = config.observation or ""
    model = None
    if is_user_model(config.model):
        import json

        try:
            with open(os.path.join(path, "observation.json")) as fh:
                meta = json.load(fh)
            shape, classes = tuple(meta["input_shape"]), int(meta["num_classes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GradinvError(f"not a readable observation directory: {path} ({exc})") from None
        model = build_model(config.model, shape, classes, config.model_output,  # type: ignore[arg-type]
                            **config.model_options)  # fmt: skip
    loss = make_protocol(config).loss if ":" in config.loss else None
    obs = Observation.load(path, model=model, loss=loss)  # type: ignore[arg-type]
    device = resolve_device(config.device)
    return obs if obs.device == device else obs.to(device)


def save_truth(path: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """The private batch of an observation, kept apart from what the server sees (scoring only)."""
    from safetensors.torch import save_file

    save_file({"images": images.detach().float().cpu().contiguous(),
               "labels": labels.detach().long().cpu().contiguous()}, path)  # fmt: skip


def load_truth(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
        images, labels = tensors["images"], tensors["labels"]
    except FileNotFoundError:
        raise GradinvError(f"truth file not found: {path}") from None
    except (SafetensorError, OSError, KeyError, RuntimeError) as exc:
        raise GradinvError(
            f"{path} is not a private batch written by gradinv observe ({exc})"
        ) from None
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise GradinvError(
            f"{path}: images {tuple(images.shape)} and labels {tuple(labels.shape)} disagree"
        )
    return images, labels


def unscored(
    config: RunConfig, rec: Reconstruction, obs: Observation, elapsed: float
) -> dict[str, Any]:
    """metrics.json without ground truth: what the attack found and how well it explains the update."""
    from .attacks.engine import matching_loss

    try:
        loss = matching_loss(obs, rec.images, rec.labels)
    except GradinvError:
        loss = None
    return {
        "attack": config.attack,
        "observation": config.observation,
        "model": (obs.model_spec or {}).get("name", config.model),
        "batch_size": int(rec.images.shape[0]),
        "scored": False,
        "matching_loss": loss,
        "labels_recovered": None if rec.labels is None else sorted(int(v) for v in rec.labels),
        "recovered_batch_size": int(rec.info.get("batch_size", rec.images.shape[0])),
        "iterations": len(rec.loss_history) or None,
        "time_s": round(elapsed, 3),
        "threads": torch.get_num_threads(),
        "defenses": jsonable(obs.defenses),
        "secure_aggregation": obs.secure_aggregation,
        **privacy_fields(obs),
        "info": {k: jsonable(v) for k, v in rec.info.items()},
    }


def privacy_fields(obs: Observation | None) -> dict[str, Any]:
    """The observation's formal guarantee for metrics.json: `epsilon` and `delta` when a defense
    with an accountant (DP-SGD) ran, nothing otherwise. An infinite ε (σ = 0: no guarantee) is
    written as null, since JSON has no infinity; `privacy` keeps the accountant's whole record."""
    out: dict[str, Any] = {}
    if obs is not None and obs.privacy:
        eps = obs.privacy.get("epsilon")
        finite = isinstance(eps, (int, float)) and math.isfinite(eps)
        out["epsilon"] = float(eps) if finite else None
        out["delta"] = obs.privacy.get("delta")
        out["privacy"] = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                          for k, v in jsonable(obs.privacy).items()}  # fmt: skip
    return out


def score(
    config: RunConfig,
    rec: Reconstruction,
    images: torch.Tensor,
    labels: torch.Tensor,
    elapsed: float,
    observation: Observation | None = None,
) -> dict[str, Any]:
    """metrics.json: the reconstruction scored against the private batch (reporting only).

    Under secure aggregation `images` is the union of the K clients' batches (K·B images): the
    attack must return K·B images, matched to them by the Hungarian assignment. With
    `observation`, its defenses and privacy guarantee (DP-SGD's ε, δ) are added. An attack that
    recovered a wrong batch size (hidden B) returns another number of images: they cannot be
    matched one to one, so the image scores are null and `batch_size_correct` is false (count
    accuracy is reported apart from image quality)."""
    if rec.images.shape[1:] != images.shape[1:]:
        raise GradinvError(
            f"attack returned {tuple(rec.images.shape)} images for a batch of {tuple(images.shape)}"
        )
    known = config.labels == "known" and not config.secure_aggregation
    if rec.images.shape[0] == images.shape[0]:
        scores = evaluate(rec.images, images, None if known else rec.labels, labels)
    else:
        scores = {k: None for k in ("psnr", "psnr_per_image", "ssim", "ssim_per_image", "mse",
                                    "mse_per_image", "assignment")}  # fmt: skip
        scores["label_accuracy"] = None
        if rec.labels is not None and not known:
            scores["label_accuracy"] = label_accuracy(rec.labels, labels)
    return {
        "attack": config.attack,
        "model": config.model,
        "data": config.data,
        "batch_size": int(images.shape[0]) // max(1, config.clients)
        if config.observation
        else config.batch_size,
        "clients": config.clients,
        "secure_aggregation": config.secure_aggregation,
        "composition": config.composition,
        "seed": config.seed,
        "model_seed": config.model_seed,
        "protocol": config.protocol,
        "labels_mode": config.labels,
        "defenses": list(config.defenses),
        **scores,
        "labels_true": sorted(int(v) for v in labels),
        "labels_recovered": None if rec.labels is None else sorted(int(v) for v in rec.labels),
        "recovered_batch_size": int(rec.info.get("batch_size", rec.images.shape[0])),
        "batch_size_correct": int(rec.images.shape[0]) == int(images.shape[0]),
        "iterations": len(rec.loss_history) or None,
        "time_s": round(elapsed, 3),
        "threads": torch.get_num_threads(),
        **privacy_fields(observation),
        "info": {k: jsonable(v) for k, v in rec.info.items()},
    }


def jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v
