"""`gradinv audit`: the whole battery on one simulated deployment, as one self-contained page."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..audit import BUDGETS, run_audit
from ..errors import GradinvError
from ..pipeline import RunConfig
from .app import app
from .options import round_config, round_options


@app.command("audit")
@round_options()
@click.option("--labels", default="hidden", show_default=True,
              help="hidden, or known (the deployment tells the server the batch's labels)")  # fmt: skip
@click.option("--generator", default=None,
              help="generator directory for gias/ggl/dip, or auto: train one for this data (minutes, cached)")  # fmt: skip
@click.option("--inverter", default=None, help="inverter directory for the learned attack")
@click.option("--try-defense", "try_defense", multiple=True,
              help="defense tried on top of the deployment, NAME[:KEY=VALUE,...] (repeatable; "
              "default: prune:ratio=0.9, noise:std=0.01, dpsgd:noise=1,clip=1; none: no defense)")  # fmt: skip
@click.option("--budget", type=click.Choice(list(BUDGETS)), default="quick", show_default=True,
              help="quick: minutes; standard: every attack's default iterations; test: a smoke test")  # fmt: skip
@click.option(
    "--out", required=True, help="directory for report.html, report.json, images.safetensors"
)
@click.option("--overwrite", is_flag=True, help="replace an earlier audit in --out")
@click.option("--progress/--no-progress", default=True, help="one line per finished step")
def audit(
    labels: str, generator: str | None, inverter: str | None, try_defense: tuple[str, ...],
    budget: str, out: str, overwrite: bool, progress: bool, **round: Any,
) -> None:  # fmt: skip
    """Audit a deployment: label recovery, batch size, the closed forms, the default attack,
    IG, DLG, generative and learned attacks, and defenses, on one simulated client round; writes
    one self-contained report.html (and report.json). Ctrl-C writes the page with what was done."""
    if labels not in ("hidden", "known"):
        raise GradinvError(f"--labels {labels!r}; choose from: hidden, known")
    config = RunConfig(labels="known" if labels == "known" else "auto", **round_config(round))
    if try_defense == ("none",):
        defenses: list[str] | None = []
    elif "none" in try_defense:
        raise GradinvError("--try-defense none cannot be combined with other defenses")
    else:
        defenses = list(try_defense) or None
    report = run_audit(  # checks every input (and --out) before any work
        config, out, budget=budget, generator=generator, inverter=inverter, defenses=defenses,
        overwrite=overwrite, log=click.echo if progress else None, command="gradinv " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    v = report["verdict"]
    im = v["images"]
    images = (
        f"strongest {im['strongest_attack']} {_db(im['strongest_psnr'])}, default attack "
        f"{_db(im['default_psnr'])}"
        if im["strongest_attack"]
        else "no attack applied"
    )
    labels = v["labels"]["result"] or "not measured"
    size = v["batch_size"]["result"] or "not measured"
    click.echo(f"images: {images}; labels: {labels}; batch size: {size}")
    errors = [s["id"] for s in report["steps"] if s["status"] == "error"]
    click.echo(
        f"report: {os.path.join(os.path.abspath(out), 'report.html')} ({report['seconds']:.0f} s)"
    )
    if errors:
        click.echo(f"{len(errors)} step(s) failed unexpectedly: {', '.join(errors)}", err=True)
        raise click.exceptions.Exit(1)


def _db(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} dB"
