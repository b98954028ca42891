"""`gradinv observe` (write what the server sees) and `gradinv inspect` (print what it holds)."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from ..errors import GradinvError
from ..fl import Observation
from ..pipeline import RunConfig, check, prepare, save_truth, use_threads
from ..report import check_output_file, output_directory
from .app import app
from .options import round_config, round_options


@app.command("observe")
@round_options()
@click.option("--labels", default="hidden", show_default=True,
              help="hidden, or known (the deployment reveals the labels to the server)")  # fmt: skip
@click.option("--out", required=True, help="directory for the observation (what the server sees)")
@click.option("--truth-out", default=None,
              help="where the private batch goes, for scoring only (default: OUT.truth.safetensors)")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="replace an earlier observation in --out")
@click.option("--progress/--no-progress", default=True, help="show progress bars")
def observe_command(
    labels: str, out: str, truth_out: str | None, overwrite: bool, progress: bool, **round: Any
) -> None:
    """Simulate a client round and save the Observation the server gets (safetensors + JSON); the
    private batch is saved apart, only to score attacks later (`gradinv attack --observation OUT
    --truth TRUTH`)."""
    if labels not in ("hidden", "known"):
        raise GradinvError(f"--labels {labels!r}; choose from: hidden, known")
    config = RunConfig(labels="known" if labels == "known" else "auto", **round_config(round))
    check(config)
    truth_path = truth_out or out.rstrip("/") + ".truth.safetensors"
    check_output_file(truth_path)
    with output_directory(out, overwrite, marker="observation.json"):
        config.threads = use_threads(config.threads)
        observation, images, true_labels = prepare(config, progress)
        observation.save(out)
        save_truth(truth_path, images, true_labels)
    click.echo(f"observation: {os.path.abspath(out)}")
    click.echo(f"private batch (for scoring only, never give it to the server): {truth_path}")


@app.command("inspect")
@click.argument("directory")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def inspect_command(directory: str, as_json: bool) -> None:
    """Print what a saved observation holds: model, shapes, protocol, defenses, what is revealed."""
    meta_path = os.path.join(directory, "observation.json")
    try:
        with open(meta_path) as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise GradinvError(f"not an observation directory: {meta_path} missing") from None
    except (OSError, ValueError) as exc:
        raise GradinvError(f"cannot read {meta_path}: {exc}") from None
    try:
        obs = Observation.load(directory)
        tensors = {k: tuple(v.shape) for k, v in obs.update.items()}
        labels = None if obs.labels is None else obs.labels.tolist()
        loaded = True
    except GradinvError as exc:  # e.g. a custom model: the metadata is still worth showing
        tensors, labels, loaded, obs = {"(not loaded)": str(exc)}, None, False, None
    report = {
        "model": meta.get("model_spec") or "custom (pass --model file.py:Class to attack it)",
        "input_shape": meta.get("input_shape"),
        "num_classes": meta.get("num_classes"),
        "normalisation": {"mean": meta.get("mean"), "std": meta.get("std")},
        "protocol": meta.get("protocol"),
        "defenses": meta.get("defenses", []),
        "secure_aggregation": meta.get("secure_aggregation", False),
        "clients": meta.get("num_clients", 1),
        "privacy": meta.get("privacy", {}),
        "revealed": {
            "batch_size": meta.get("batch_size"),
            "labels": labels,
            "buffers": sorted(obs.buffers) if loaded and obs is not None else None,
            "batch_statistics": bool(obs.batch_stats) if loaded and obs is not None else None,
            "client_mode": "train" if meta.get("train_mode", True) else "eval",
        },
        "update": {k: list(v) if isinstance(v, tuple) else v for k, v in tensors.items()},
        "parameters": None
        if not loaded or obs is None
        else int(sum(v.numel() for v in obs.update.values())),
    }
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    for key, value in report.items():
        if key == "update" and isinstance(value, dict) and len(value) > 8:
            shown = dict(list(value.items())[:8])
            value = f"{len(report['update'])} tensors, e.g. {shown}"
        click.echo(f"{key:>18}: {value}")
