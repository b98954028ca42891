"""Experiments run their attack runs through the sweep runner: a list of RunConfigs becomes one
grid (an axis of whole configurations), each run is a resumable cell that stores its metrics and
tensors, and the experiment reads the outcomes back in order to judge its claims.

    outcomes = run_configs([RunConfig(...), ...], "runs/exp/sweep", workers=2, resume=True)
    outcomes[0].metrics["psnr"], outcomes[0].reconstruction.snapshots
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..attacks import Reconstruction
from ..errors import GradinvError
from ..pipeline import RunConfig

TENSORS = "tensors.safetensors"


@dataclass
class Outcome:
    """What a finished run leaves for an experiment: its settings, metrics.json's content, the
    private batch and the reconstruction (with its snapshots)."""

    config: RunConfig
    metrics: dict[str, Any]
    images: torch.Tensor
    reconstruction: Reconstruction


def run_cell(config: dict[str, Any], out: str) -> dict[str, Any]:
    """One experiment run as a sweep cell: the attack, its metrics (plus the cosine matching
    loss, comparable across attacks — what blind choices are made on) and its tensors."""
    from ..attacks.engine import matching_loss
    from ..pipeline import run

    result = run(RunConfig(**config["run"]), progress=False)
    if result.metrics["info"].get("interrupted"):
        raise KeyboardInterrupt
    rec = result.reconstruction
    metrics = dict(result.metrics)
    metrics["matching_loss_cosine"] = matching_loss(result.observation, rec.images, rec.labels)
    tensors = {"truth": result.images, "images": rec.images}
    if rec.snapshots:
        tensors["snapshots"] = torch.stack([s for _, s in rec.snapshots])
        tensors["snapshot_iterations"] = torch.tensor([it for it, _ in rec.snapshots])
    if rec.labels is not None:
        tensors["labels"] = rec.labels
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
              os.path.join(out, TENSORS))  # fmt: skip
    with open(os.path.join(out, "run.json"), "w") as fh:
        json.dump({"metrics": metrics, "loss_history": rec.loss_history}, fh)
    return metrics


def load_outcome(config: RunConfig, cell_dir: str) -> Outcome:
    with open(os.path.join(cell_dir, "run.json")) as fh:
        saved = json.load(fh)
    t = load_file(os.path.join(cell_dir, TENSORS))
    snapshots = []
    if "snapshots" in t:
        snapshots = [
            (int(i), s) for i, s in zip(t["snapshot_iterations"], t["snapshots"], strict=True)
        ]
    rec = Reconstruction(images=t["images"], labels=t.get("labels"),
                         loss_history=saved["loss_history"], snapshots=snapshots,
                         info=saved["metrics"].get("info", {}))  # fmt: skip
    return Outcome(config, saved["metrics"], t["truth"], rec)


def run_configs(
    configs: list[RunConfig],
    out: str,
    engine: str = "local",
    workers: int = 1,
    resume: bool = False,
    progress: bool = False,
) -> list[Outcome]:
    """Run every config (in parallel with `workers`; resumable with `resume`) and return their
    outcomes in order. A failed run is a GradinvError naming it."""
    from ..sweep import Grid, run_sweep

    if not configs:
        return []
    runs = [(c if c.threads else replace(c, threads=1)).to_dict() for c in configs]
    grid = Grid(base={}, axes={"run": runs}, settings=None)
    result = run_sweep(grid, out, engine=engine, workers=workers, resume=resume,
                       threads=configs[0].threads or 1, cell_fn=run_cell, check_fn=None,
                       progress=progress, metrics=())  # fmt: skip
    if result.failed:
        first = result.failed[0]
        raise GradinvError(f"{len(result.failed)} run(s) failed, e.g. {first}; rerun with --resume")
    outcomes = []
    for cell, config in zip(grid.cells(), configs, strict=True):
        outcomes.append(load_outcome(config, os.path.join(out, "cells", cell.id)))
    return outcomes


def fresh_sweep(out: str, resume: bool) -> None:
    """Without --resume an experiment starts over: its earlier runs (DIR/sweep) are removed."""
    import shutil

    path = os.path.join(out, "sweep")
    if not resume and os.path.isdir(path):
        shutil.rmtree(path)
