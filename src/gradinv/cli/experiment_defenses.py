"""`gradinv experiment defenses`: defense × strength × attack, utility, and the claims table."""

from __future__ import annotations

import os

import click

from ..errors import GradinvError
from ..report import output_directory
from .app import experiment_app


@experiment_app.command("defenses")
@click.option("--quick", is_flag=True, help="the claims' key cells, small budgets, 2 seeds")
@click.option("--out", type=str, default="runs/defenses", show_default=True,
              help="output directory (report.md, claims.json, results.json, figures, cells/)")  # fmt: skip
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="the sweep engine: local process pool, or Ray Tune")  # fmt: skip
@click.option("--workers", type=int, default=1, show_default=True,
              help="cells run at once (one torch thread each)")  # fmt: skip
@click.option("--resume", is_flag=True,
              help="continue in --out: finished cells are kept, the others run")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="replace earlier results in --out")
@click.option("--progress/--no-progress", default=True, help="print one line per cell")
def defenses(quick: bool, out: str, engine: str, workers: int, resume: bool, overwrite: bool,
             progress: bool) -> None:  # fmt: skip
    """Attack every defense setting with DLG, IG, their defense-aware variants, the generative
    attacks and closed forms over seeds; measure FedAvg utility; write the claims table."""
    from ..experiments.defenses import run_defense_experiment

    if workers < 1:
        raise GradinvError(f"--workers must be >= 1, got {workers}")
    with output_directory(out, overwrite or resume, marker="claims.json"):
        log = (lambda msg: click.echo(msg, err=True)) if progress else None
        result = run_defense_experiment(out, quick=quick, engine=engine, workers=workers,
                                        resume=resume, overwrite=overwrite,
                                        progress=progress, log=log)  # fmt: skip
    held = sum(c["holds"] for c in result["claims"])
    for c in result["claims"]:
        click.echo(f"{c['id']}: {'holds' if c['holds'] else 'does NOT hold'} — {c['claim']}")
    click.echo(
        f"{held}/{len(result['claims'])} claims hold ({result['total_s']} s, "
        f"{len(result['failed_cells'])} failed cells); "
        f"report: {os.path.join(os.path.abspath(out), 'report.md')}"
    )
