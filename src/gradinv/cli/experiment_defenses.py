"""`gradinv experiment defenses`: defense × strength × attack, utility, and the claims table."""

from __future__ import annotations

import os

import click

from ..errors import GradinvError
from ..report import output_directory
from .app import experiment_app
from .experiment_options import runner_options


@experiment_app.command("defenses")
@click.option(
    "--quick", is_flag=True, help="the claims' key cells, small budgets, 2 seeds (= --grid quick)"
)
@click.option(
    "--grid",
    "preset",
    type=click.Choice(["quick", "claims", "full"]),
    default=None,
    help="the grid: quick, claims (the claims' settings, 5 seeds, moderate budgets) "
    "or full (default)",
)
@click.option("--seeds", type=int, default=None, help="seeds 0..N-1 instead of the grid's")
@click.option("--out", type=str, default="runs/defenses", show_default=True,
              help="output directory (report.md, claims.json, results.json, figures, cells/)")  # fmt: skip
@click.option("--progress/--no-progress", default=True, help="print one line per cell")
@runner_options
def defenses(
    quick: bool, preset: str | None, seeds: int | None, out: str, progress: bool, engine: str,
    workers: int, resume: bool, overwrite: bool,
) -> None:  # fmt: skip
    """Attack every defense setting with DLG, IG, their defense-aware variants, the generative
    attacks and closed forms over seeds; measure FedAvg utility; write the claims table."""
    from ..experiments.defenses import run_defense_experiment

    if workers < 1:
        raise GradinvError(f"--workers must be >= 1, got {workers}")
    if seeds is not None and seeds < 1:
        raise GradinvError(f"--seeds must be >= 1, got {seeds}")
    if quick and preset not in (None, "quick"):
        raise GradinvError(f"--quick contradicts --grid {preset}; pass one of them")
    with output_directory(out, overwrite or resume, marker="claims.json"):
        log = (lambda msg: click.echo(msg, err=True)) if progress else None
        result = run_defense_experiment(
            out, quick=quick, preset=preset, seeds=seeds, engine=engine, workers=workers,
            resume=resume, overwrite=overwrite, progress=progress, log=log,
        )  # fmt: skip
    held = sum(c["holds"] for c in result["claims"])
    for c in result["claims"]:
        click.echo(f"{c['id']}: {'holds' if c['holds'] else 'does NOT hold'} — {c['claim']}")
    click.echo(
        f"{held}/{len(result['claims'])} claims hold ({result['total_s']} s, "
        f"{len(result['failed_cells'])} failed cells); "
        f"report: {os.path.join(os.path.abspath(out), 'report.md')}"
    )
