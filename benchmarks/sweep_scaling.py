"""Throughput of `gradinv sweep`'s engines: one fixed grid of real attack cells run with 1 and 2
workers on each engine, and each engine's fixed start-up and per-cell overhead, measured with
near-empty cells.

    .venv/bin/python benchmarks/sweep_scaling.py [--cells 16] [--iterations 1000]
        [--engines local,ray] [--workers 1,2] [--json docs/results/sweep_scaling.json]

The grid: IG on LeNet, 32x32 photo crops, batch 1, `--iterations` steps, seeds 0..cells-1, one
torch thread per cell. Overhead: a sweep of N near-empty cells on one worker, each recording when
it started: start-up is the time until the first cell, per-cell overhead the median gap between
consecutive cells (the driver's dispatch, the cell directory and record, the results line). The machine's load average is sampled
during every run and reported next to it: on a shared machine the speed-up says as much about
the neighbours as about the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

from gradinv.sweep import Grid, run_sweep


def empty_cell(config: dict[str, Any], out: str) -> dict[str, Any]:
    """A near-empty cell: the engine's bookkeeping and nothing else (and when it ran)."""
    return {"psnr": 0.0, "time_s": 0.0, "started": time.time()}


class LoadSampler:
    """The 1-minute load average every few seconds while a run lasts."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    @property
    def mean(self) -> float:
        return round(sum(self.samples) / len(self.samples), 2)


def timed_sweep(grid: Grid, engine: str, workers: int, **kw: Any) -> dict[str, Any]:
    out = tempfile.mkdtemp(prefix=f"sweep-bench-{engine}-")
    try:
        with LoadSampler() as load:
            start = time.time()
            result = run_sweep(grid, out, engine=engine, workers=workers, progress=False, **kw)
            wall = time.time() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert result.succeeded, result.failed
    metrics = [r["metrics"] for r in result.records.values()]
    report = {"wall_s": round(wall, 2), "load_mean": load.mean, "load_max": max(load.samples),
           "mean_cell_time_s": round(statistics.mean(m["time_s"] for m in metrics), 3)}  # fmt: skip
    if "started" in metrics[0]:
        starts = sorted(m["started"] for m in metrics)
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        report["first_cell_after_s"] = round(starts[0] - start, 2)  # start-up: pool / Ray / Tune
        report["per_cell_s"] = round(statistics.median(gaps), 4) if gaps else None
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--empty-cells", type=int, default=32)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json", default="docs/results/sweep_scaling.json")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    engines = args.engines.split(",")
    workers = [int(w) for w in args.workers.split(",")]
    base = {"attack": "ig", "model": "lenet", "iterations": args.iterations}
    grid = Grid(base=base, axes={"seed": list(range(args.cells))})
    print(f"{os.cpu_count()} CPUs, load average now {os.getloadavg()[0]:.2f}", flush=True)

    # Overhead from near-empty cells on one worker: each cell records when it started, so the
    # per-cell cost is the median gap between consecutive cells (start-up noise cannot leak in),
    # and the start-up is the time from run_sweep's call to the first cell.
    overhead = []
    empty = Grid(base={}, axes={"seed": list(range(args.empty_cells))}, settings=None)
    for engine in engines:
        run = timed_sweep(empty, engine, 1, cell_fn=empty_cell, check_fn=None)
        overhead.append({"engine": engine, "cells": args.empty_cells, "wall_s": run["wall_s"],
                         "startup_s": run["first_cell_after_s"], "per_cell_s": run["per_cell_s"],
                         "load_mean": run["load_mean"]})  # fmt: skip
        print(f"overhead {engine}: {overhead[-1]}", flush=True)

    results = []
    for engine in engines:
        for w in workers:
            run = timed_sweep(grid, engine, w)
            run = {"engine": engine, "workers": w, "cells": args.cells, **run}
            run["cells_per_min"] = round(60 * args.cells / run["wall_s"], 2)
            one = next((r for r in results if r["engine"] == engine and r["workers"] == 1), None)
            run["speedup"] = round(one["wall_s"] / run["wall_s"], 2) if one else 1.0
            results.append(run)
            print(f"run {run}", flush=True)

    print("\n| engine | workers | cells | wall (s) | cells/min | speed-up | attack s/cell | "
          "load avg (mean / max) |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in results:
        print(f"| {r['engine']} | {r['workers']} | {r['cells']} | {r['wall_s']:.1f} | "
              f"{r['cells_per_min']:.2f} | {r['speedup']:.2f}x | {r['mean_cell_time_s']:.2f} | "
              f"{r['load_mean']:.1f} / {r['load_max']:.1f} |")  # fmt: skip
    print("\n| engine | start-up until the first cell (s) | overhead per cell (s) | wall for "
          f"{args.empty_cells} empty cells (s) | load avg |\n|---|---|---|---|---|")  # fmt: skip
    for o in overhead:
        print(f"| {o['engine']} | {o['startup_s']:.1f} | {o['per_cell_s']:.3f} | "
              f"{o['wall_s']:.1f} | {o['load_mean']:.1f} |")  # fmt: skip
    import torch

    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "torch": torch.__version__, "platform": platform.platform()}  # fmt: skip
    try:
        import ray

        machine["ray"] = ray.__version__
    except ImportError:
        pass
    command = " ".join(["python benchmarks/sweep_scaling.py", *sys.argv[1:]])
    report = {
        "command": command,
        "grid": grid.to_dict(),
        "machine": machine,
        "runs": results,
        "overhead": overhead,
    }
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
