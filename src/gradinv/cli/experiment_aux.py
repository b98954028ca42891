"""`gradinv experiment aux-distribution`: generative priors in and out of their training
distribution, as a resumable sweep."""

from __future__ import annotations

import os

import click

from ..experiments.aux_distribution import run_aux_distribution
from .app import experiment_app


@experiment_app.command("aux-distribution")
@click.option("--quick", is_flag=True, help="small generator and budgets: minutes on 2 CPU cores")
@click.option("--out", type=str, default="runs/aux-distribution", show_default=True,
              help="output directory (report.md, results.json, claims.json, grids/, sweep/)")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="discard an earlier run in --out")
@click.option("--resume", is_flag=True, help="continue an interrupted run in --out")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="sweep engine")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="cells at once")  # fmt: skip
@click.option("--progress/--no-progress", default=True, help="a progress bar of cells")
def aux_distribution(
    quick: bool, out: str, overwrite: bool, resume: bool, engine: str, workers: int,
    progress: bool,
) -> None:  # fmt: skip
    """Pixel IG vs generative priors (gias, gifd, ggl, dip, robust candidates) on private images
    in and out of the generator's training distribution; writes a claims table to OUT."""
    result = run_aux_distribution(out, quick=quick, engine=engine, workers=workers, resume=resume,
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
