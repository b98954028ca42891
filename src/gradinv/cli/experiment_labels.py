"""`gradinv experiment labels`: the label-recovery table (strategies × B × composition × state)."""

from __future__ import annotations

import os
import time

import click

from ..errors import GradinvError
from ..experiments.labels import LabelGrid, run_grid, summary, write
from ..report import output_directory
from .app import experiment_app
from .experiment_options import runner_options


@experiment_app.command("labels")
@click.option("--quick", is_flag=True, help="a reduced grid: under 3 minutes on 2 CPU cores")
@click.option("--out", type=str, default="runs/labels", show_default=True,
              help="output directory (results.json, report.md, count_accuracy.png)")  # fmt: skip
@click.option("--seeds", type=int, default=None, help="seeds per cell (default: 3 quick, 5 full)")
@click.option("--progress/--no-progress", default=True, help="show cells done / total")
@runner_options
def experiment_labels(
    quick: bool, out: str, seeds: int | None, progress: bool, engine: str, workers: int,
    resume: bool, overwrite: bool,
) -> None:  # fmt: skip
    """Count accuracy and exact-multiset rate of every label strategy, written to OUT."""
    grid = LabelGrid.quick() if quick else LabelGrid()
    if seeds is not None:
        if seeds < 1:
            raise GradinvError(f"--seeds must be >= 1, got {seeds}")
        grid.seeds = seeds
    with output_directory(out, overwrite, marker="results.json"):
        start = time.perf_counter()
        rows = run_grid(
            grid, progress=(lambda msg: click.echo(msg, err=True)) if progress else None
        )
        seconds = time.perf_counter() - start
        paths = write(out, grid, rows, seconds, quick)
    for r in summary(rows):
        click.echo(
            f"{r['strategy']:>15} {r['state']:>9}: count accuracy {r['count_accuracy']:.3f}, "
            f"exact {r['exact_rate']:.2f} ({r['cells']} cells)"
        )
    click.echo(f"{seconds:.0f} s; report: {os.path.abspath(paths['report'])}")
