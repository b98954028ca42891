"""`gradinv experiment information-discard`: the six information-discard statements, measured."""

from __future__ import annotations

import os

import click

from ..experiments.information_discard import CLAIM_IDS, run_information_discard
from ..experiments.runs import fresh_sweep
from ..report import output_directory
from .app import experiment_app
from .experiment_options import runner_options


@experiment_app.command("information-discard")
@click.option("--quick", is_flag=True, help="small budgets: a few minutes on 2 CPU cores")
@click.option("--out", type=str, default="runs/information-discard", show_default=True,
              help="output directory (report.md, results.json, claims.json, figures)")  # fmt: skip
@click.option("--claims", type=str, default="".join(CLAIM_IDS), show_default=True,
              help="which statements to run, e.g. abc")  # fmt: skip
@runner_options
def information_discard(
    quick: bool, out: str, claims: str, engine: str, workers: int, resume: bool, overwrite: bool
) -> None:
    """Reproduce the information-discard experiments (a-f) and write a claims table."""
    with output_directory(out, overwrite or resume, marker="claims.json"):
        fresh_sweep(out, resume)
        result = run_information_discard(out, quick=quick, claims=list(claims), log=click.echo,
                                          engine=engine, workers=workers, resume=resume)  # fmt: skip
    held = sum(c["holds"] for c in result["claims"])
    click.echo(
        f"{held}/{len(result['claims'])} claims hold ({result['total_s']} s); "
        f"report: {os.path.join(os.path.abspath(out), 'report.md')}"
    )
