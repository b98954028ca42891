"""`gradinv attack` and `gradinv demo`."""

from __future__ import annotations

import os
from typing import Any

import click

from ..errors import Interrupted
from ..options import key_values
from ..pipeline import RunConfig, check, run
from ..priors import parse_prior
from ..report import output_directory, write_report
from .app import app
from .options import round_config, round_options


def execute(config: RunConfig, out: str, progress: bool = True, overwrite: bool = False) -> dict:
    """Run one attack and write its report; everything is checked before the work starts. After
    Ctrl-C the report of what was reached is written, then `Interrupted` (exit 130) is raised."""
    check(config)
    with output_directory(out, overwrite):
        result = run(config, progress=progress)
        paths = write_report(out, result)
    m = result.metrics
    if m.get("scored") is False:
        loss = m["matching_loss"]
        click.echo(
            f"{m['attack']} on {m['observation']} (batch {m['batch_size']}): matching loss "
            f"{'n/a' if loss is None else f'{loss:.3g}'}, {m['time_s']:.1f} s (no --truth: not scored)"
        )
    else:
        acc = "" if m["label_accuracy"] is None else f", label accuracy {m['label_accuracy']:.2f}"
        click.echo(
            f"{m['attack']} on {m['model']} (batch {m['batch_size']}): PSNR {m['psnr']:.2f} dB, "
            f"SSIM {m['ssim']:.3f}{acc}, {m['time_s']:.1f} s"
        )
    if m["info"].get("warning"):
        click.echo(f"warning: {m['info']['warning']}", err=True)
    click.echo(
        f"report: {os.path.abspath(out)}  ({', '.join(os.path.basename(p) for p in paths.values())})"
    )
    if m["info"].get("interrupted"):
        raise Interrupted(f"stopped early; the report of the best iterate so far is in {out}")
    return m


@app.command()
@click.option("--attack", "attack_name", default="auto", show_default=True,
              help="attack name (see `gradinv list`; `auto` picks for the observation)")  # fmt: skip
@round_options()
@click.option(
    "--labels", default="known", show_default=True, help="known, joint, or a label strategy name"
)
@click.option(
    "--iterations", type=int, default=None, help="attack iterations (default: the attack's)"
)
@click.option("--restarts", type=int, default=None, help="random restarts (default: the attack's)")
@click.option("--attack-opt", multiple=True,
              help="attack hyper-parameter KEY=VALUE (repeatable; `gradinv list --options NAME`)")  # fmt: skip
@click.option("--prior", multiple=True, help="prior NAME=WEIGHT (repeatable), e.g. tv=1e-2")
@click.option("--observation", default=None,
              help="attack this saved observation (gradinv observe) instead of simulating a round")  # fmt: skip
@click.option(
    "--truth", default=None, help="the private batch of --observation, to score the attack"
)
@click.option("--model-output", default=None,
              help="logits of a model returning a tuple (INDEX) or a dict (KEY)")  # fmt: skip
@click.option("--out", default="runs/attack", show_default=True, help="report directory")
@click.option("--overwrite", is_flag=True, help="replace an earlier report in --out")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def attack(
    attack_name: str, labels: str, iterations: int | None, restarts: int | None,
    attack_opt: tuple[str, ...], prior: tuple[str, ...], observation: str | None,
    truth: str | None, model_output: str | None, out: str, overwrite: bool, progress: bool,
    **round: Any,
) -> None:  # fmt: skip
    """Simulate a client round on a private batch (or load a saved observation), attack the
    update, and write a report."""
    config = RunConfig(
        attack=attack_name, labels=labels, iterations=iterations, restarts=restarts,
        observation=observation, truth=truth, model_output=model_output,
        attack_options=key_values(attack_opt, "attack option"),
        priors=[parse_prior(p) for p in prior],
        **round_config(round),
    )  # fmt: skip
    execute(config, out, progress, overwrite)


@app.command()
@click.option("--out", default="gradinv-demo", show_default=True, help="report directory")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def demo(out: str, progress: bool) -> None:
    """The main job with all defaults on built-in photos: DLG recovers a private image from LeNet's
    gradient (label not shared: recovered jointly). Seconds on 2 CPU cores."""
    config = RunConfig(attack="dlg", model="lenet", data="sample", labels="joint", iterations=30)
    click.echo(
        "gradinv demo: a client shares LeNet's gradient on one private photo crop; DLG inverts it."
    )
    execute(config, out, progress, overwrite=True)
