"""Learned inversion (Wu et al., "Learning to Invert", UAI 2023) against pixel-space IG and the
mean image, on an untrained LeNet over Fashion-MNIST (28×28, gray): in distribution (@test) and
out of distribution (digits, lfw and the built-in photos, gray and resized to 28), batch sizes
1, 2, 4 told or hidden, and defended clients (sign, 99 % pruning, Gaussian noise) with the
inverter trained on defended updates (the adaptive attacker).

The experiment is a list of cells (plain config dicts) run by the module-level, picklable
`learned_cells.cell(config, out_dir)` through the sweep runner (DIR/sweep; `--engine`,
`--workers`, `--resume`); the inverters are trained (or found in the cache) first.
Every choice is blind: recipes were set on held-out *training* images, IG runs with its
defaults, hidden batch sizes are counted by the network (within the analytic bound) — PSNR
against the private images is reporting only.

Example::

    result = run_learned_inversion("runs/learned", quick=True)
    print([(c["id"], c["holds"]) for c in result["claims"]])
    # or: gradinv experiment learned-inversion --quick --out runs/learned
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..data import load_dataset
from ..errors import GradinvError
from ..learned import cached_inverter
from . import learned_report
from .learned_cells import cell


@dataclass
class LearnedSettings:
    """Budgets and targets; `quick_settings()` and `full_settings()` are the two presets."""

    seed: int = 0  # inverter seeds; batches are fixed by their own seeds
    images: int = 16  # private images per cell (batches of B: ceil(images / B))
    count_batches: int = 100  # hidden-B batches per batch size for the count accuracy
    ig_iterations: int = 1000  # half IG's default: it fails under the defenses either way
    epochs: int = 10  # the default B = 1 recipe
    multi_epochs: int = 6  # the inverters for B = 1, 2, 4 (per-size heads; set head)
    defense_epochs: int = 4
    options: dict[str, Any] = field(default_factory=dict)  # InverterOptions for every recipe
    batch_sizes: tuple[int, ...] = (1, 2, 4)
    ood: tuple[str, ...] = ("digits@test", "lfw@test", "sample@test")
    defenses: tuple[str, ...] = ("sign", "prune:ratio=0.99", "noise:std=0.1")
    # claim thresholds (the targets in the full run; below the measured spread in quick)
    target_psnr: float = 20.0
    target_gain: float = 8.0
    target_count: float = 0.95
    target_defense_gain: float = 3.0
    target_ms: float = 50.0


def quick_settings() -> LearnedSettings:
    """The `--quick` budget: a few minutes on 2 CPU cores, inverters included (cached)."""
    return LearnedSettings(
        images=4, count_batches=16, ig_iterations=100, epochs=2, multi_epochs=2,
        defense_epochs=2,
        options={"max_images": 3000, "val_images": 200, "hidden": (256,), "sketch": 1024,
                 "batch": 64, "stats_updates": 512},
        target_psnr=13.0, target_gain=1.5, target_count=0.7, target_defense_gain=0.5,
    )  # fmt: skip


def full_settings() -> LearnedSettings:
    return LearnedSettings()


def deployment() -> dict[str, Any]:
    """The FL deployment: an untrained LeNet (model seed 0) for 28×28 gray Fashion-MNIST; the
    clients normalise with the training split's statistics (fixed by the deployment, so the
    out-of-distribution clients use them too)."""
    train = load_dataset("fashion-mnist@train", 1)
    mean, std = train.channel_stats(28)
    return {"model": "lenet", "model_seed": 0, "model_options": {}, "channels": 1,
            "image_size": 28, "num_classes": train.num_classes, "train": "fashion-mnist@train",
            "test": "fashion-mnist@test", "mean": mean, "std": std}  # fmt: skip


def recipes(s: LearnedSettings, d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """cached_inverter arguments of every inverter the experiment uses."""
    base = {"model": d["model"], "data": d["train"], "channels": d["channels"],
            "image_size": d["image_size"], "model_seed": d["model_seed"], "seed": s.seed,
            "mean": d["mean"], "std": d["std"], **{k: _plain(v) for k, v in s.options.items()}}  # fmt: skip
    sizes = list(s.batch_sizes)
    out = {
        "b1": {**base, "batch_sizes": [1], "epochs": s.epochs},
        "per-size": {**base, "batch_sizes": sizes, "epochs": s.multi_epochs},
        "set": {**base, "batch_sizes": sizes, "epochs": s.multi_epochs, "head": "set"},
    }
    for spec in s.defenses:
        out[spec] = {**base, "batch_sizes": [1], "epochs": s.defense_epochs, "defenses": [spec]}
    return out


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def cells(s: LearnedSettings) -> list[dict[str, Any]]:
    """Every configuration of the experiment, in run order (ids are unique)."""
    d = deployment()
    r = recipes(s, d)
    # the experiment's seed moves the private batches too (cell j of seed s: its own images)
    common = {"deployment": d, "images": s.images, "composition": "random",
              "seed_offset": 100_000 * s.seed}  # fmt: skip
    out: list[dict[str, Any]] = []

    def add(cid: str, **config: Any) -> None:
        out.append({"id": cid, **common, **config})

    for data in (d["test"], *s.ood):
        short = data.split("@")[0]
        add(f"learned/b1/{short}/B1", kind="learned", recipe=r["b1"], data=data, batch_size=1)
        for b in s.batch_sizes:
            for hidden in (False, True):
                tag = "hidden" if hidden else "told"
                add(f"learned/per-size/{short}/B{b}/{tag}", kind="learned", recipe=r["per-size"],
                    data=data, batch_size=b, hidden_batch_size=hidden)  # fmt: skip
    for b in s.batch_sizes:
        for hidden in (False, True):
            tag = "hidden" if hidden else "told"
            add(f"learned/set/fashion-mnist/B{b}/{tag}", kind="learned", recipe=r["set"],
                data=d["test"], batch_size=b, hidden_batch_size=hidden)  # fmt: skip
    for spec in s.defenses:
        add(f"learned/{spec}/fashion-mnist/B1", kind="learned", recipe=r[spec], data=d["test"],
            batch_size=1, defenses=[spec])  # fmt: skip
    for head in ("per-size", "set"):
        for comp in ("random", "unique"):
            add(f"count/{head}/{comp}", kind="count", recipe=r[head], data=d["test"],
                batch_sizes=list(s.batch_sizes), batches=s.count_batches, composition=comp,
                seed_offset=100_000 * s.seed + 1000)  # fmt: skip
    for b in s.batch_sizes:
        add(f"ig/fashion-mnist/B{b}", kind="ig", data=d["test"], batch_size=b,
            iterations=s.ig_iterations)  # fmt: skip
    for data in s.ood:
        add(f"ig/{data.split('@')[0]}/B1", kind="ig", data=data, batch_size=1,
            iterations=s.ig_iterations)  # fmt: skip
    for spec in s.defenses:
        add(f"ig/{spec}/fashion-mnist/B1", kind="ig", data=d["test"], batch_size=1,
            iterations=s.ig_iterations, defenses=[spec])  # fmt: skip
    return out


def sweep_cell(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """The sweep runner's cell: the grid's one axis, `cell`, holds whole experiment configs."""
    return cell(config["cell"], out_dir)


def run_cells(configs: list[dict[str, Any]], out: str, engine: str = "local", workers: int = 1,
              resume: bool = False, log: Callable[[str], None] | None = None,
              ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:  # fmt: skip
    """Run the cells through the sweep runner (DIR/sweep: resumable, `workers` at once);
    ({id: metrics}, {id: cell directory}). A failed cell is a GradinvError naming it."""
    from ..sweep import Grid, run_sweep

    root = os.path.join(out, "sweep")
    grid = Grid(base={}, axes={"cell": configs}, settings=None)
    result = run_sweep(grid, root, engine=engine, workers=workers, resume=resume, threads=1,
                       cell_fn=sweep_cell, check_fn=None, progress=log is not None,
                       metrics=())  # fmt: skip
    if result.failed:
        raise GradinvError(
            f"{len(result.failed)} cell(s) failed, e.g. {result.failed[0]}; rerun with --resume"
        )
    results, dirs = {}, {}
    for sweep_cell_, config in zip(grid.cells(), configs, strict=True):
        results[config["id"]] = result.records[sweep_cell_.id]["metrics"]
        dirs[config["id"]] = os.path.join(root, "cells", sweep_cell_.id)
        if log:
            log(f"{config['id']}: {_summary(results[config['id']])}")
    return results, dirs


def _summary(m: dict[str, Any]) -> str:
    if "overall" in m:
        return f"count accuracy {m['overall']}"
    p = m["psnr"]
    text = f"PSNR {p['mean']} ± {p['std']} dB (n={p['n']})"
    if "mean_image_psnr" in m:
        text += f", mean image {m['mean_image_psnr']['mean']} dB, count {m['count_accuracy']}"
    return text + f" ({m['cell_seconds']} s)"


def train_inverters(s: LearnedSettings, log: Callable[[str], None] | None = None) -> dict:
    """Train (or find in the cache) every inverter first, so the cells only apply them."""
    from ..learned import read_record

    out = {}
    for name, recipe in recipes(s, deployment()).items():
        start = time.perf_counter()
        directory = cached_inverter(**recipe, progress=log is not None)
        record = read_record(directory)
        t = record["training"]
        out[name] = {"directory": directory, "seconds": t["seconds"],
                     "cpu_seconds": t["cpu_seconds"], "threads": t["threads"],
                     "epochs": t["epochs"], "val": t["losses"][-1],
                     "train_images": record["data"]["train_images"],
                     "architecture": record["architecture"]}  # fmt: skip
        if log:
            log(f"inverter {name}: {t['epochs']} epochs, {t['seconds']} s "
                f"({t['cpu_seconds']} s CPU), held-out {t['losses'][-1].get('val_psnr')} "
                f"(ready in {time.perf_counter() - start:.0f} s)")  # fmt: skip
    return out


def run_learned_inversion(
    out: str,
    quick: bool = False,
    settings: LearnedSettings | None = None,
    log: Callable[[str], None] | None = None,
    engine: str = "local",
    workers: int = 1,
    resume: bool = False,
) -> dict[str, Any]:
    """Train the inverters (cached), run every cell, and write results.json, claims.json,
    report.md and the figures into `out`; returns {"claims": [...], ...}."""
    s = settings or (quick_settings() if quick else full_settings())
    if s.images < 1 or s.count_batches < 1:
        raise GradinvError("images and count_batches must be >= 1")
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread, immune to oversubscription
    try:
        inverters = train_inverters(s, log)
        configs = cells(s)
        results, dirs = run_cells(configs, out, engine, workers, resume, log)
    finally:
        torch.set_num_threads(threads)
    payload = {
        "command": f"gradinv experiment learned-inversion{' --quick' if quick else ''} --out {out}",
        "quick": quick,
        "settings": asdict(s),
        "deployment": deployment(),
        "inverters": inverters,
        "cells": [
            {
                "config": {k: v for k, v in c.items() if k != "deployment"},
                "metrics": results[c["id"]],
            }
            for c in configs
        ],  # fmt: skip
        "total_s": round(time.perf_counter() - start, 1),
    }
    claims = learned_report.claims(payload, s)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(payload, fh, indent=2)
    with open(os.path.join(out, "claims.json"), "w") as fh:
        json.dump(claims, fh, indent=2)
    learned_report.write(out, payload, claims, dirs)
    return {"claims": claims, **payload}
