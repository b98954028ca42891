"""Train an inverter (gradient → images) for one fixed shared model on a `@train` split,
resumably: a rerun of an interrupted run ends with the same weights, bit for bit, as an
uninterrupted one (same seed, same thread count; see session.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import load_dataset, parse_split
from ..defenses import Defense, parse_defense
from ..errors import GradinvError
from ..fl import check_normalization
from ..generative.checkpoint import load_checkpoint, remove_checkpoint
from ..generative.runtime import deferred_interrupt, torch_threads
from ..generative.train import training_images
from ..models import build_model
from ..options import build, option
from .network import HEADS, Inverter
from .session import Trainer, split_images
from .store import VERSION, architecture, prepare_out, save_inverter
from .updates import UpdateMaker, fingerprint


@dataclass
class InverterOptions:
    """Hyper-parameters of inverter training (besides model, data, batch sizes, defenses,
    epochs and seed)."""

    hidden: tuple = option((1000, 1000), "widths of the MLP's hidden layers")
    sketch: int = option(4096, "hashed features D (count sketch); 0: no hashing", low=0)
    sketch_seed: int = option(0, "seed of the hashing (bucket and sign of every entry)", low=0)
    head: str = option("per-size", "per-size: one image head per B + a count head; set: K slots "
                       "with present scores, Hungarian-matched", choices=HEADS)  # fmt: skip
    lr: float = option(1e-3, "Adam learning rate (cosine decay to 0)", low=0, low_open=True)
    batch: int = option(128, "updates per training step", low=1)
    count_weight: float = option(0.1, "weight of the count (or present-slot) loss", low=0)
    max_images: int = option(0, "train on the first N images of a fixed shuffle (0: all)", low=0)
    val_images: int = option(
        1000, "training-split images held out for the per-epoch validation (never trained on)",
        low=0,
    )  # fmt: skip
    stats_updates: int = option(2048, "updates that set the feature standardisation", low=2)
    threads: int = option(1, "torch threads while training (0: torch's default)", low=0)


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GradinvError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _defenses(defenses: Sequence[str | Defense]) -> list[Defense]:
    return [parse_defense(d) if isinstance(d, str) else d for d in defenses]


def train_inverter(
    model: str = "lenet",
    data: str = "fashion-mnist@train",
    channels: int = 1,
    image_size: int = 28,
    batch_sizes: Sequence[int] = (1,),
    defenses: Sequence[str | Defense] = (),
    epochs: int = 10,
    seed: int = 0,
    out: str = "inverter",
    model_seed: int = 0,
    model_options: dict[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    **options: Any,
) -> str:
    """Train an inverter for the model `build_model(model, …)` initialised with
    `torch.manual_seed(model_seed)` (exactly as the pipeline builds it), on `data` (a `@train`
    split or a whole dataset; `@test` is refused), and write inverter.safetensors and
    inverter.json into `out`; returns `out`.

    The clients normalise with `mean`/`std` (default: the data's channel statistics, as the
    pipeline computes them) and apply `defenses` (specs such as "prune:ratio=0.99") to their
    update; the inverter learns to invert exactly those updates, for every B in `batch_sizes`.
    `options`: InverterOptions (hidden, sketch, head, lr, batch, ...). An interrupted run (Ctrl-C,
    or killed) leaves a checkpoint in `out`; the same call resumes it.
    """
    _check_int("epochs", epochs, 1)
    _check_int("seed", seed, 0)
    _check_int("model seed", model_seed, 0)
    sizes = sorted({_check_int("batch size", b, 1) for b in batch_sizes})
    if not sizes:
        raise GradinvError("give at least one batch size")
    opts = build(InverterOptions, "train-inverter", dict(options))
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in opts.hidden):
        raise GradinvError(f"hidden widths must be integers >= 1, got {opts.hidden}")
    if parse_split(data)[1] == "test":
        raise GradinvError(
            f"refusing to train an inverter on {data}: use the @train split, so the attacked "
            "(@test) images stay unseen"
        )
    defense_objects = _defenses(defenses)
    dataset = load_dataset(data, channels)
    shape = (dataset.channels, image_size, image_size)
    torch.manual_seed(model_seed)  # the model exactly as the pipeline builds it
    shared = build_model(model, shape, dataset.num_classes, **dict(model_options or {}))
    if mean is None or std is None:  # the pipeline's default: the data's channel statistics
        stats = dataset.channel_stats(image_size)
        mean = stats[0] if mean is None else mean
        std = stats[1] if std is None else std
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise GradinvError(f"mean/std need {shape[0]} channel values, got {len(mean)}/{len(std)}")
    check_normalization(mean, std)
    maker = UpdateMaker(shared, mean, std, defense_objects)
    prepare_out(out, overwrite)
    loaded = time.perf_counter()
    images = training_images(dataset, image_size, 0)
    labels = torch.as_tensor(dataset.labels)
    load_seconds = time.perf_counter() - loaded
    train, val = split_images(len(images), opts.val_images, opts.max_images)
    if len(train) < max(sizes):
        raise GradinvError(f"{len(train)} training images cannot form a batch of {max(sizes)}")
    model_record = {
        "spec": {"name": model, "options": dict(model_options or {})},
        "seed": model_seed,
        "parameters_sha256": fingerprint(maker.params),
        "parameter_names": maker.names,
        "parameters": maker.size,
        "input_shape": list(shape),
        "num_classes": dataset.num_classes,
    }
    recipe = {
        "version": VERSION,
        "model": model_record,
        "data": dataset.spec,
        "images": len(images),
        "mean": mean,
        "std": std,
        "batch_sizes": sizes,
        "defenses": [d.to_dict() for d in defense_objects],
        "epochs": epochs,
        "seed": seed,
        **{k: v for k, v in asdict(opts).items() if k != "threads"},
    }
    with torch_threads(opts.threads) as threads:
        torch.manual_seed(seed)  # the inverter's initial weights
        net = Inverter(maker.size, shape, sizes, opts.hidden, opts.sketch, opts.sketch_seed,
                       opts.head)  # fmt: skip
        trainer = Trainer(maker, net, images, labels, train, val, opts, seed, epochs)
        nets, optimizers = {"net": net}, {"net": trainer.opt}
        state = load_checkpoint(out, recipe, nets, optimizers, trainer.noise)
        if state is None:
            trainer.set_statistics()
        else:
            trainer.state = state
        state = trainer.state
        if state.epoch > epochs or (state.epoch == epochs and state.step):
            raise GradinvError(f"{out} holds a checkpoint past epoch {epochs}; pass --overwrite")
        state.sessions += 1
        bar = tqdm(total=epochs * trainer.steps, initial=state.epoch * trainer.steps + state.step,
                   desc="train-inverter", disable=not progress, dynamic_ncols=True)  # fmt: skip
        with deferred_interrupt() as flag, bar:
            while state.epoch < epochs:
                trainer.run_epoch(out, recipe, flag, bar)
    record = {
        "architecture": architecture(net, list(opts.hidden)),
        "model": model_record,
        "protocol": maker.protocol.to_dict(),
        "normalization": {"mean": mean, "std": std},
        "defenses": [d.to_dict() for d in defense_objects],
        "data": {
            "spec": dataset.spec,
            "split": dataset.split,
            "channels": dataset.channels,
            "image_size": image_size,
            "images": len(images),
            "train_images": len(train),
            "val_images": len(val),
            "max_images": opts.max_images,
        },
        "training": {
            "seed": seed,
            "epochs": epochs,
            "steps": epochs * trainer.steps,
            "batch": opts.batch,
            "lr": opts.lr,
            "count_weight": opts.count_weight,
            "stats_updates": opts.stats_updates,
            "losses": state.losses,
            "seconds": round(state.seconds, 2),
            "cpu_seconds": round(state.cpu_seconds, 2),
            "load_seconds": round(load_seconds, 2),
            "sessions": state.sessions,
            "threads": threads,
            "torch": torch.__version__,
        },
    }
    save_inverter(net, out, record)
    remove_checkpoint(out)
    return out


__all__ = ["InverterOptions", "train_inverter"]
