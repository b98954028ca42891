"""`gradinv experiment aux-distribution`: generative priors in and out of their training
distribution, as a resumable sweep."""

from __future__ import annotations

import os

import click

from ..errors import GradinvError
from ..experiments.aux_distribution import PRESETS, run_aux_distribution
from .app import experiment_app
from .experiment_options import runner_options


@experiment_app.command("aux-distribution")
@click.option("--quick", is_flag=True, help="small generator and budgets: minutes on 2 CPU cores")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="quick (= --quick), reduced (every set and attack at short budgets, 8 images "
              "per cell) or full (the default: 16 images per cell, library defaults)")  # fmt: skip
@click.option("--out", type=str, default="runs/aux-distribution", show_default=True,
              help="output directory (report.md, results.json, claims.json, grids/, sweep/)")  # fmt: skip
@runner_options
@click.option("--progress/--no-progress", default=True, help="a progress bar of cells")
def aux_distribution(
    quick: bool, preset: str | None, out: str, engine: str, workers: int, resume: bool,
    overwrite: bool, progress: bool,
) -> None:  # fmt: skip
    """Pixel IG vs generative priors (gias, gifd, ggl, dip, robust candidates) on private images
    in and out of the generator's training distribution; writes a claims table to OUT."""
    if quick and preset not in (None, "quick"):
        raise GradinvError(f"--quick and --preset {preset} contradict each other: choose one")
    settings = PRESETS[preset or ("quick" if quick else "full")]()
    result = run_aux_distribution(out, quick=settings.preset == "quick", settings=settings,
                                  engine=engine, workers=workers, resume=resume,
                                  overwrite=overwrite, progress=progress,
                                  log=lambda m: click.echo(m, err=True))  # fmt: skip
    for c in result["claims"]:
        click.echo(f"{c['id']}: {'holds' if c['holds'] else 'does NOT hold'}  {c['measured']}")
    failed = result["failed_cells"]
    if failed:
        click.echo(f"{len(failed)} cells failed (see {out}/sweep/results.jsonl)", err=True)
    click.echo(f"{result['total_s']} s; report: {os.path.join(os.path.abspath(out), 'report.md')}")
    if failed:
        click.get_current_context().exit(1)
