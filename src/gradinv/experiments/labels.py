"""The label-recovery experiment: every strategy × batch size × label composition × model state ×
model, averaged over seeds; results.json (one row per cell), report.md and a plot.

Reproduces the comparison of Ma et al. (iLRG, ICLR 2023) and Wainakh et al. (LLG, PETS 2022) on
gradinv's built-in data:

    >>> from gradinv.experiments.labels import LabelGrid, run_grid
    >>> rows = run_grid(LabelGrid.quick())
    >>> rows[0]["count_accuracy"]
"""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..data import batch_indices, load_dataset
from ..errors import GradinvError
from ..fl import Observation, observe
from ..labels import STRATEGIES, estimate_batch_size, recover_labels
from ..metrics import label_accuracy
from ..models import build_model, train_model
from ..pipeline import RunConfig, prepare


def score(recovered: torch.Tensor, true: torch.Tensor) -> dict[str, Any]:
    """count_accuracy = multiset overlap / B; exact = the multisets are equal."""
    acc = label_accuracy(recovered, true)
    return {
        "labels_true": sorted(int(v) for v in true),
        "labels_recovered": sorted(int(v) for v in recovered),
        "count_accuracy": acc,
        "exact": acc == 1.0 and len(recovered) == len(true),
    }


def batch_size_report(observation: Observation) -> dict[str, Any]:
    """estimate_batch_size as a dict, or {"error": message} when the model has no linear layer."""
    try:
        return asdict(estimate_batch_size(observation))
    except GradinvError as exc:
        return {"error": str(exc)}


def measure(
    observation: Observation,
    labels: torch.Tensor,
    strategy: str,
    estimate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One strategy on one observation (labels hidden from it): the CLI's JSON object. When the
    batch size is hidden and the update cannot reveal it, nothing is recovered (fields null)."""
    if estimate is None:
        estimate = batch_size_report(observation)
    batch_size = observation.batch_size
    if batch_size is None and estimate.get("estimate") is not None:
        batch_size = int(estimate["estimate"])
    row: dict[str, Any] = {
        "strategy": strategy,
        "batch_size": batch_size,
        "batch_size_known": observation.batch_size is not None,
        "batch_size_estimate": estimate,
    }
    if batch_size is None:
        return row | {"labels_true": sorted(int(v) for v in labels), "labels_recovered": None,
                      "count_accuracy": None, "exact": None, "time_s": None}  # fmt: skip
    start = time.perf_counter()
    recovered = recover_labels(observation, strategy, batch_size)
    elapsed = time.perf_counter() - start
    return row | {**score(recovered, labels), "time_s": round(elapsed, 6)}


def measure_config(config: RunConfig, strategy: str) -> dict[str, Any]:
    """Build the observation with the pipeline (labels hidden) and measure one strategy."""
    STRATEGIES.get(strategy)
    config.labels = strategy
    observation, _, labels = prepare(config, progress=False)
    return {
        **measure(observation, labels, strategy),
        "model": config.model,
        "composition": config.composition,
        "seed": config.seed,
        "train_epochs": config.train_epochs,
        "protocol": config.protocol,
    }


@dataclass
class LabelGrid:
    """The experiment's grid. Trained models see the whole dataset (in FL the global model was
    trained on the clients' data in earlier rounds); untrained ones keep their initialisation."""

    strategies: list[str] = field(default_factory=lambda: STRATEGIES.names())
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    compositions: list[str] = field(default_factory=lambda: ["unique", "random", "same"])
    train_epochs: list[int] = field(default_factory=lambda: [0, 5])
    models: list[str] = field(default_factory=lambda: ["lenet", "convnet", "resnet18"])
    seeds: int = 5
    data: str = "sample"
    image_size: int = 32

    @classmethod
    def quick(cls) -> LabelGrid:
        return cls(
            batch_sizes=[1, 4, 32, 64],
            train_epochs=[0, 1],
            models=["lenet", "convnet"],
            seeds=2,
        )


def _cells(grid: LabelGrid, num_classes: int) -> list[tuple[int, str]]:
    out = []
    for b in grid.batch_sizes:
        for comp in grid.compositions:
            if comp == "unique" and b > num_classes:
                continue
            out.append((b, comp))
    return out


@functools.cache
def _model(model_name: str, epochs: int, data: str, image_size: int) -> torch.nn.Module:
    """The (trained) model of a cell, built once per process and shared by its cells."""
    dataset = load_dataset(data)
    mean, std = dataset.channel_stats(image_size)
    torch.manual_seed(0)
    c = int(dataset.load([0], image_size).shape[1])
    model = build_model(model_name, (c, image_size, image_size), dataset.num_classes)
    if epochs:
        train_model(model, dataset, epochs, image_size, mean, std, progress=False)
    return model.eval()


def label_cell(config: dict[str, Any], out: str) -> dict[str, Any]:
    """One cell of the grid (model, state, B, composition): every strategy over the seeds."""
    data, size = config["data"], config["image_size"]
    dataset = load_dataset(data)
    mean, std = dataset.channel_stats(size)
    model = _model(config["model"], config["train_epochs"], data, size)
    b, comp = config["batch_size"], config["composition"]
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in config["strategies"]}
    for seed in range(config["seeds"]):
        idx = batch_indices(dataset, b, comp, seed)
        images = dataset.load(idx.tolist(), size)
        labels = torch.as_tensor(dataset.labels[idx])
        obs = observe(copy.deepcopy(model), images, labels, mean=mean, std=std)
        est = {"estimate": None}  # not needed for the table; B is known
        for s in config["strategies"]:
            try:
                results[s].append(measure(obs, labels, s, est))
            except GradinvError:
                pass  # strategy not applicable (idlg B>1, yin B>classes)
    rows = []
    state = "trained" if config["train_epochs"] else "untrained"
    for s, runs in results.items():
        if runs:
            rows.append({
                "model": config["model"], "state": state, "train_epochs": config["train_epochs"],
                "batch_size": b, "composition": comp, "strategy": s, "seeds": len(runs),
                "count_accuracy": float(np.mean([r["count_accuracy"] for r in runs])),
                "exact_rate": float(np.mean([r["exact"] for r in runs])),
                "time_ms": 1000 * float(np.median([r["time_s"] for r in runs])),
            })  # fmt: skip
    return {"rows": rows}


def run_grid(
    grid: LabelGrid,
    progress: Any = None,
    out: str | None = None,
    engine: str = "inline",
    workers: int = 1,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """All cells through the sweep runner (resumable; parallel with `workers`); one row per
    (model, state, B, composition, strategy), averaged over seeds."""
    import tempfile

    from ..sweep import Grid, run_sweep

    dataset = load_dataset(grid.data)
    cases = [
        {"model": m, "train_epochs": e, "batch_size": b, "composition": comp}
        for m in grid.models for e in grid.train_epochs
        for b, comp in _cells(grid, dataset.num_classes)
    ]  # fmt: skip
    base = {"data": grid.data, "image_size": grid.image_size, "seeds": grid.seeds,
            "strategies": list(grid.strategies)}  # fmt: skip
    flat = Grid(base={}, axes={"cell": [base | c for c in cases]}, settings=None)
    with tempfile.TemporaryDirectory() as scratch:
        where = os.path.join(out, "sweep") if out else os.path.join(scratch, "sweep")
        result = run_sweep(flat, where, engine=engine, workers=workers, resume=resume,
                           cell_fn=_cell, check_fn=None, progress=progress is not None,
                           metrics=())  # fmt: skip
        if result.failed:
            raise GradinvError(f"{len(result.failed)} label cells failed; rerun with --resume")
        rows: list[dict[str, Any]] = []
        for cell in flat.cells():
            rows += result.records[cell.id]["metrics"]["rows"]
    return rows


def _cell(config: dict[str, Any], out: str) -> dict[str, Any]:
    return label_cell(config["cell"], out)


def _table(rows: list[dict[str, Any]]) -> str:
    head = "| model | state | B | composition | strategy | count acc. | exact | ms |\n"
    head += "|---|---|---|---|---|---|---|---|\n"
    lines = [
        f"| {r['model']} | {r['state']} | {r['batch_size']} | {r['composition']} | "
        f"{r['strategy']} | {r['count_accuracy']:.3f} | {r['exact_rate']:.2f} | {r['time_ms']:.1f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy: mean count accuracy and exact rate over all cells with B > 1 it handled."""
    out = []
    for s in sorted({r["strategy"] for r in rows}):
        for state in sorted({r["state"] for r in rows}):
            sel = [
                r
                for r in rows
                if r["strategy"] == s and r["state"] == state and r["batch_size"] > 1
            ]
            if sel:
                out.append(
                    {
                        "strategy": s,
                        "state": state,
                        "cells": len(sel),
                        "count_accuracy": float(np.mean([r["count_accuracy"] for r in sel])),
                        "exact_rate": float(np.mean([r["exact_rate"] for r in sel])),
                    }
                )
    return out


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Count accuracy against batch size per strategy (random composition), one panel per state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = sorted({r["state"] for r in rows})
    fig, axes = plt.subplots(1, len(states), figsize=(5 * len(states), 4), squeeze=False)
    for ax, state in zip(axes[0], states, strict=True):
        for s in sorted({r["strategy"] for r in rows}):
            sel = [
                r
                for r in rows
                if r["strategy"] == s and r["state"] == state and r["composition"] == "random"
            ]
            bs = sorted({r["batch_size"] for r in sel})
            if not bs:
                continue
            acc = [np.mean([r["count_accuracy"] for r in sel if r["batch_size"] == b]) for b in bs]
            ax.plot(bs, acc, marker="o", label=s)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("count accuracy (random labels, mean over models)")
        ax.set_title(f"{state} models")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(
    out: str, grid: LabelGrid, rows: list[dict[str, Any]], seconds: float, quick: bool
) -> dict[str, str]:
    """results.json, report.md and count_accuracy.png in `out`."""
    os.makedirs(out, exist_ok=True)
    paths = {
        "results": os.path.join(out, "results.json"),
        "report": os.path.join(out, "report.md"),
        "plot": os.path.join(out, "count_accuracy.png"),
    }
    with open(paths["results"], "w") as fh:
        json.dump(
            {
                "command": f"gradinv experiment labels{' --quick' if quick else ''} --out {out}",
                "grid": asdict(grid),
                "duration_s": round(seconds, 1),
                "rows": rows,
            },
            fh,
            indent=1,
        )
    plot(rows, paths["plot"])
    summ = summary(rows)
    lines = [
        "# Label recovery: strategies × batch size × composition × model state",
        "",
        f"Mode: {'--quick' if quick else 'full'}; duration {seconds:.0f} s "
        f"({torch.get_num_threads()} CPU threads); data `{grid.data}` at {grid.image_size}px; "
        f"{grid.seeds} seeds per cell; trained = {', '.join(str(e) for e in grid.train_epochs if e)} "
        "epochs of Adam on the dataset.",
        "",
        "count accuracy = multiset overlap / B; exact = fraction of seeds whose multiset is exactly right.",
        "idlg is B=1 only; yin only where B ≤ classes. FedSGD protocol.",
        "",
        "## Headline (all cells with B > 1, mean over cells)",
        "",
        "| strategy | state | cells | count acc. | exact |",
        "|---|---|---|---|---|",
        *[
            f"| {r['strategy']} | {r['state']} | {r['cells']} | {r['count_accuracy']:.3f} | {r['exact_rate']:.2f} |"
            for r in summ
        ],
        "",
        "## What it shows",
        "",
        _findings(rows),
        "",
        "![count accuracy](count_accuracy.png)",
        "",
        "## All cells",
        "",
        _table(rows),
    ]
    with open(paths["report"], "w") as fh:
        fh.write("\n".join(lines))
    return paths


def _findings(rows: list[dict[str, Any]]) -> str:
    best: dict[tuple[str, str], tuple[str, float]] = {}
    for state, comp in sorted({(r["state"], r["composition"]) for r in rows}):
        scores = {}
        wanted = {
            r["batch_size"]
            for r in rows
            if r["state"] == state and r["composition"] == comp and r["batch_size"] > 1
        }
        for s in {r["strategy"] for r in rows}:
            sel = [
                r
                for r in rows
                if r["strategy"] == s
                and r["state"] == state
                and r["composition"] == comp
                and r["batch_size"] > 1
            ]
            if sel and {r["batch_size"] for r in sel} == wanted:
                scores[s] = float(np.mean([r["count_accuracy"] for r in sel]))
        if scores:
            name = max(scores, key=scores.__getitem__)
            best[(state, comp)] = (name, scores[name])
    return "\n".join(
        f"- {state}, {comp} labels (B > 1): best is `{name}` with mean count accuracy {acc:.3f}."
        for (state, comp), (name, acc) in best.items()
    )
