"""`gradinv experiment learned-inversion`: learned inversion vs. IG vs. the mean image."""

from __future__ import annotations

import os

import click

from ..report import output_directory
from .app import experiment_app
from .experiment_options import runner_options


@experiment_app.command("learned-inversion")
@click.option("--quick", is_flag=True, help="small budgets: a few minutes on 2 CPU cores")
@click.option("--out", type=str, default="runs/learned-inversion", show_default=True,
              help="output directory (report.md, results.json, claims.json, figures)")  # fmt: skip
@runner_options
def learned_inversion(
    quick: bool, out: str, engine: str, workers: int, resume: bool, overwrite: bool
) -> None:
    """Learned inversion (Wu et al., UAI 2023) in and out of distribution, with told and hidden
    batch sizes and under defenses, against IG and the mean image; writes a claims table."""
    from ..experiments.learned_inversion import run_learned_inversion
    from ..experiments.runs import fresh_sweep

    with output_directory(out, overwrite or resume, marker="claims.json"):
        fresh_sweep(out, resume)
        result = run_learned_inversion(out, quick=quick, log=click.echo, engine=engine,
                                       workers=workers, resume=resume)  # fmt: skip
    held = sum(c["holds"] for c in result["claims"])
    click.echo(
        f"{held}/{len(result['claims'])} claims hold ({result['total_s']} s); "
        f"report: {os.path.join(os.path.abspath(out), 'report.md')}"
    )
