"""`gradinv attack` and `gradinv demo`."""

from __future__ import annotations

import ast
import os
from typing import Any

import click

from ..errors import GradinvError
from ..pipeline import RunConfig, run
from ..priors import parse_prior
from ..report import write_report
from .app import app
from .options import key_values, round_config, round_options


def _literal(value: str) -> Any:
    """Attack options are typed by Python literal syntax: 1e-3, 10, True, 'cosine' or cosine."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def execute(config: RunConfig, out: str, progress: bool = True) -> dict:
    try:  # fail before the attack, not after it, if the report cannot be written
        os.makedirs(out, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        raise GradinvError(f"cannot write the report to {out!r}: {exc}") from None
    result = run(config, progress=progress)
    paths = write_report(out, result)
    m = result.metrics
    acc = "" if m["label_accuracy"] is None else f", label accuracy {m['label_accuracy']:.2f}"
    interrupted = " (interrupted: best so far)" if m["info"].get("interrupted") else ""
    click.echo(
        f"{m['attack']} on {m['model']} (batch {m['batch_size']}): PSNR {m['psnr']:.2f} dB, "
        f"SSIM {m['ssim']:.3f}{acc}, {m['time_s']:.1f} s{interrupted}"
    )
    click.echo(
        f"report: {os.path.abspath(out)}  ({', '.join(os.path.basename(p) for p in paths.values())})"
    )
    if m["info"].get("warning"):  # e.g. a closed form that cannot be exact here: say so
        click.echo(f"warning: {m['info']['warning']}", err=True)
    return m


@app.command()
@click.option(
    "--attack",
    "attack_name",
    default="ig",
    show_default=True,
    help="attack name (see `gradinv list`)",
)
@round_options()
@click.option(
    "--labels", default="known", show_default=True, help="known, joint, or a label strategy name"
)
@click.option(
    "--iterations", type=int, default=None, help="attack iterations (default: the attack's)"
)
@click.option("--restarts", type=int, default=None, help="random restarts (default: the attack's)")
@click.option("--attack-opt", multiple=True, help="attack hyper-parameter KEY=VALUE (repeatable)")
@click.option("--prior", multiple=True, help="prior NAME=WEIGHT (repeatable), e.g. tv=1e-2")
@click.option("--out", default="runs/attack", show_default=True, help="report directory")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def attack(
    attack_name: str, labels: str, iterations: int | None, restarts: int | None,
    attack_opt: tuple[str, ...], prior: tuple[str, ...], out: str, progress: bool, **round: Any,
) -> None:  # fmt: skip
    """Simulate a client round on a private batch, attack the update, and write a report."""
    config = RunConfig(
        attack=attack_name, labels=labels, iterations=iterations, restarts=restarts,
        attack_options={k: _literal(v) for k, v in key_values(attack_opt, "attack option").items()},
        priors=[parse_prior(p) for p in prior],
        **round_config(round),
    )  # fmt: skip
    execute(config, out, progress)


@app.command()
@click.option("--out", default="gradinv-demo", show_default=True, help="report directory")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def demo(out: str, progress: bool) -> None:
    """The main job with all defaults on built-in photos: DLG recovers a private image from LeNet's
    gradient (label not shared: recovered jointly). Seconds on 2 CPU cores."""
    config = RunConfig(attack="dlg", model="lenet", data="sample", labels="joint", iterations=100)
    click.echo(
        "gradinv demo: a client shares LeNet's gradient on one private photo crop; DLG inverts it."
    )
    execute(config, out, progress)
