"""Running the cells: `run_cells(cells, out, cell_fn, workers, resume)` -> one record per cell.

This is the seam for the sweep runner (`gradinv.sweep.run_sweep`, branch `sweep`, not in main
yet): it has the same cell contract (`cell_fn(config, cell_dir) -> metrics`, importable by name),
so switching means calling `run_sweep(Grid(base={}, axes={"cell": cells}, settings=None), out,
cell_fn=..., check_fn=None, engine=..., workers=..., resume=...)` here (the cell function unwraps
`{"cell": config}`). Until then: a local process pool, one directory per cell
(`cells/<id>/record.json` written last, so a directory with a record is complete), and `resume`
skips the cells that already have one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ...errors import GradinvError

CellFn = Callable[[dict[str, Any], str], dict[str, Any]]
RECORD = "record.json"


def cell_id(config: dict[str, Any]) -> str:
    """A readable, stable directory name: kind, block, defense, attack, seed and a hash."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    parts = [config["kind"], config.get("block", ""), config["defense"],
             config.get("attack", ""), "aware" if config.get("aware") else "",
             f"s{config['seed']}"]  # fmt: skip
    slug = "_".join(p for p in parts if p)
    slug = "".join(c if c.isalnum() or c in "._=-" else "-" for c in slug)
    return f"{slug}_{digest}"


def _execute(cell_fn: CellFn, config: dict[str, Any], root: str) -> dict[str, Any]:
    """One cell into a scratch directory renamed into place once its record is written; an
    error becomes an error record (one bad cell never stops the experiment)."""
    cid = cell_id(config)
    final, tmp = os.path.join(root, cid), os.path.join(root, ".tmp-" + cid)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        metrics = cell_fn(config, tmp)
        record = {"cell": cid, "config": config, "metrics": metrics}
    except GradinvError as exc:
        record = {"cell": cid, "config": config, "error": str(exc)}
    except Exception as exc:  # a bug: recorded with its type, the run goes on
        record = {"cell": cid, "config": config, "error": f"{type(exc).__name__}: {exc}"}
    with open(os.path.join(tmp, RECORD), "w") as fh:
        json.dump(record, fh, indent=1, allow_nan=False)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    return record


def stored(root: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished, successful cell, else None."""
    try:
        with open(os.path.join(root, cell_id(config), RECORD)) as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if "metrics" in record else None


def run_cells(
    cells: list[dict[str, Any]],
    out: str,
    cell_fn: CellFn,
    workers: int = 1,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every cell (in `workers` processes) and return their records in the cells' order."""
    if workers < 1:
        raise GradinvError(f"--workers must be >= 1, got {workers}")
    root = os.path.join(out, "cells")
    if not resume:
        shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for i, config in enumerate(cells):
        done = stored(root, config) if resume else None
        if done is not None:
            records[i] = done
        else:
            todo.append(i)
    if log and resume:
        log(f"resume: {len(records)} of {len(cells)} cells already done")

    def note(i: int, record: dict[str, Any]) -> None:
        records[i] = record
        if log:
            what = record.get("error") or _short(record["metrics"])
            log(f"[{len(records)}/{len(cells)}] {record['cell']}: {what}")

    if workers == 1:
        for i in todo:
            note(i, _execute(cell_fn, cells[i], root))
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = {pool.submit(_execute, cell_fn, cells[i], root): i for i in todo}
            for future in as_completed(futures):
                note(futures[future], future.result())
    return [records[i] for i in range(len(cells))]


def _short(metrics: dict[str, Any]) -> str:
    if "accuracy" in metrics:
        return f"accuracy {metrics['accuracy']:.3f} ({metrics['cpu_s']} s CPU)"
    return f"PSNR {metrics['psnr']:.1f} dB ({metrics['cpu_s']} s CPU)"
