"""`gradinv experiment learned-inversion`: learned inversion vs. IG vs. the mean image."""

from __future__ import annotations

import os

import click

from ..report import output_directory
from .app import experiment_app


@experiment_app.command("learned-inversion")
@click.option("--quick", is_flag=True, help="small budgets: a few minutes on 2 CPU cores")
@click.option("--out", type=str, default="runs/learned-inversion", show_default=True,
              help="output directory (report.md, results.json, claims.json, figures)")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="replace earlier results in --out")
def learned_inversion(quick: bool, out: str, overwrite: bool) -> None:
    """Learned inversion (Wu et al., UAI 2023) in and out of distribution, with told and hidden
    batch sizes and under defenses, against IG and the mean image; writes a claims table."""
    from ..experiments.learned_inversion import run_learned_inversion

    with output_directory(out, overwrite, marker="claims.json"):
        result = run_learned_inversion(out, quick=quick, log=click.echo)
    held = sum(c["holds"] for c in result["claims"])
    click.echo(
        f"{held}/{len(result['claims'])} claims hold ({result['total_s']} s); "
        f"report: {os.path.join(os.path.abspath(out), 'report.md')}"
    )
