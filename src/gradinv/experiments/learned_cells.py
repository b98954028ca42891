"""The cells of the learned-inversion experiment: `cell(config, out_dir) -> metrics` runs one
configuration (a plain, JSON-able dict) and is module-level and picklable, so a sweep runner can
execute cells in worker processes. Kinds: "learned" (the learned attack on batches of one data
set, with the mean-image baseline on the same images), "ig" (pixel-space Inverting Gradients on
the same batches, labels given), "count" (hidden batch sizes: the network's count, the analytic
rank estimate and their combination)."""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..attacks import make_attack
from ..data import batch_indices, load_dataset
from ..defenses import parse_defense
from ..errors import GradinvError
from ..fl import observe
from ..generative.train import training_images
from ..labels import estimate_batch_size
from ..learned import cached_inverter, load_inverter
from ..metrics import evaluate, psnr
from ..models import build_model

KEEP = 8  # images per cell kept for the report's figures
BATCH_SEED = 10_000  # batch j of a cell is drawn with seed BATCH_SEED + offset + j


@functools.lru_cache(maxsize=8)
def _dataset(spec: str, channels: int):  # noqa: ANN202 - ImageDataset
    return load_dataset(spec, channels)


@functools.lru_cache(maxsize=4)
def mean_image(spec: str, channels: int, size: int) -> torch.Tensor:
    """The mean of a training split: the best constant guess, and the baseline to beat."""
    images = training_images(_dataset(spec, channels), size, 0)
    return images.double().mean(0).div(255).float()


def deployment_model(d: dict[str, Any]) -> torch.nn.Module:
    """The shared model exactly as the pipeline builds it (seeded before building)."""
    torch.manual_seed(d["model_seed"])
    shape = (d["channels"], d["image_size"], d["image_size"])
    return build_model(d["model"], shape, d["num_classes"], **d.get("model_options", {}))


def batches(config: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """(images in [0,1], labels, round seed) for ceil(images / B) batches of `data`. Labels are
    taken modulo the model's classes (out-of-distribution data label as they like)."""
    d = config["deployment"]
    data = _dataset(config["data"], d["channels"])
    b = config["batch_size"]
    out = []
    for j in range(math.ceil(config["images"] / b)):
        seed = BATCH_SEED + config.get("seed_offset", 0) + j
        idx = batch_indices(data, b, config.get("composition", "random"), seed)
        x = data.load(idx.tolist(), d["image_size"])
        y = torch.as_tensor(data.labels[idx]) % d["num_classes"]
        out.append((x, y, seed))
    return out


def _observe(config: dict, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             seed: int, hidden: bool = False, labels: bool = False) -> Any:  # fmt: skip
    d = config["deployment"]
    defenses = [parse_defense(s) for s in config.get("defenses", [])]
    return observe(model, x, y, mean=d["mean"], std=d["std"], defenses=defenses, seed=seed,
                   share_batch_size=not hidden, share_labels=labels)  # fmt: skip


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    a = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(a.mean()), 3), "std": round(float(a.std()), 3), "n": len(a)}


def _keep(out_dir: str, truth: list[torch.Tensor], recon: list[torch.Tensor],
          extra: dict[str, torch.Tensor] | None = None) -> None:  # fmt: skip
    """The first images of the cell (truth and matched reconstruction) for the figures."""
    if not truth:
        return
    os.makedirs(out_dir, exist_ok=True)
    tensors = {"truth": torch.cat(truth)[:KEEP].contiguous(),
               "recon": torch.cat(recon)[:KEEP].contiguous(), **(extra or {})}  # fmt: skip
    save_file({k: v.float().contiguous() for k, v in tensors.items()},
              os.path.join(out_dir, "images.safetensors"))  # fmt: skip


def learned_cell(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    d = config["deployment"]
    directory = cached_inverter(**config["recipe"])
    model = deployment_model(d)
    attack = make_attack("learned", inverter=directory, count=config.get("count", "auto"),
                         progress=False)  # fmt: skip
    mean = mean_image(d["train"], d["channels"], d["image_size"])
    hidden = bool(config.get("hidden_batch_size"))
    scores, baseline, ssim, correct, recovered, times = [], [], [], [], [], []
    truth_kept, recon_kept = [], []
    load_inverter(directory)  # read once: the timing is of the reconstruction alone
    for x, y, seed in batches(config):
        obs = _observe(config, model, x, y, seed, hidden=hidden)
        start = time.perf_counter()
        rec = attack.reconstruct(obs)
        times.append(time.perf_counter() - start)
        baseline += psnr(mean.expand_as(x), x).tolist()
        b = rec.images.shape[0]
        recovered.append(b)
        correct.append(b == len(x))
        if b == len(x):  # images are scored only when the count is right (one-to-one match)
            m = evaluate(rec.images, x)
            scores += m["psnr_per_image"]
            ssim += m["ssim_per_image"]
            truth_kept.append(x)
            recon_kept.append(rec.images[m["assignment"]])
    _keep(out_dir, truth_kept, recon_kept, {"mean": mean[None]})
    record = load_inverter(directory).record
    return {
        "psnr": _stats(scores),
        "psnr_per_image": [round(v, 3) for v in scores],
        "ssim": _stats(ssim),
        "mean_image_psnr": _stats(baseline),
        "count_accuracy": round(float(np.mean(correct)), 4),
        "recovered_batch_sizes": recovered,
        "reconstruction_ms": {
            "median": round(1e3 * float(np.median(times)), 2),
            "max": round(1e3 * float(np.max(times)), 2),
        },  # fmt: skip
        "inverter": {
            "directory": directory,
            "seconds": record["training"]["seconds"],
            "cpu_seconds": record["training"]["cpu_seconds"],
            "val_psnr": record["training"]["losses"][-1].get("val_psnr"),
        },  # fmt: skip
    }


def ig_cell(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Pixel-space IG with the labels given (a stronger baseline than recovering them), defense
    aware under a defense; its hyper-parameters are its defaults (no choice by PSNR)."""
    model = deployment_model(config["deployment"])
    scores, ssim, times, truth_kept, recon_kept = [], [], [], [], []
    for x, y, seed in batches(config):
        obs = _observe(config, model, x, y, seed, labels=True)
        attack = make_attack("ig", iterations=config["iterations"], seed=seed, progress=False,
                             defense_aware=bool(config.get("defenses")))  # fmt: skip
        start = time.perf_counter()
        rec = attack.reconstruct(obs)
        times.append(time.perf_counter() - start)
        m = evaluate(rec.images, x)
        scores += m["psnr_per_image"]
        ssim += m["ssim_per_image"]
        truth_kept.append(x)
        recon_kept.append(rec.images[m["assignment"]])
    _keep(out_dir, truth_kept, recon_kept)
    return {"psnr": _stats(scores), "psnr_per_image": [round(v, 3) for v in scores],
            "ssim": _stats(ssim), "seconds_per_batch": round(float(np.mean(times)), 2),
            "iterations": config["iterations"]}  # fmt: skip


def count_cell(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Exact-count rates of hidden batch sizes: the network (count head or set head), the
    analytic rank estimate (None counts as wrong), the analytic lower bound taken as the count
    (`analytic_bound`; on LeNet it counts distinct labels), and `auto` (the network within the
    analytic lower bound)."""
    d = config["deployment"]
    directory = cached_inverter(**config["recipe"])
    model = deployment_model(d)
    attacks = {k: make_attack("learned", inverter=directory, count=k, progress=False)
               for k in ("network", "auto")}  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    for b in config["batch_sizes"]:
        hits = {"network": [], "auto": [], "analytic": [], "analytic_bound": []}
        analytic_none = 0
        for x, y, seed in batches({**config, "batch_size": b, "images": b * config["batches"]}):
            obs = _observe(config, model, x, y, seed, hidden=True)
            for k, attack in attacks.items():
                hits[k].append(attack.reconstruct(obs).info["batch_size"] == b)
            try:
                e = estimate_batch_size(obs)
                estimate, at_least = e.estimate, e.at_least
            except GradinvError:
                estimate = at_least = None
            analytic_none += estimate is None
            hits["analytic"].append(estimate == b)
            hits["analytic_bound"].append(at_least == b)
        rows[str(b)] = {k: round(float(np.mean(v)), 4) for k, v in hits.items()}
        rows[str(b)]["analytic_none"] = analytic_none
        rows[str(b)]["batches"] = config["batches"]
    overall = {k: round(float(np.mean([r[k] for r in rows.values()])), 4)
               for k in hits}  # fmt: skip
    return {"per_batch_size": rows, "overall": overall}


KINDS = {"learned": learned_cell, "ig": ig_cell, "count": count_cell}


def cell(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Run one cell of the experiment (see the module docstring); returns its metrics."""
    if config.get("kind") not in KINDS:
        raise GradinvError(
            f"unknown cell kind {config.get('kind')!r}; choose from: {', '.join(KINDS)}"
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(int(config.get("threads", 1)))
    start = time.perf_counter()
    try:
        metrics = KINDS[config["kind"]](config, out_dir)
    finally:
        torch.set_num_threads(threads)
    return metrics | {"cell_seconds": round(time.perf_counter() - start, 2)}
