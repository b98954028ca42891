"""`gradinv attack` and `gradinv demo`."""

from __future__ import annotations

import ast
import os
from typing import Any

import click

from ..errors import GradinvError
from ..models import parse_option
from ..pipeline import RunConfig, run
from ..priors import parse_prior
from ..report import write_report
from .app import app


def _key_values(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GradinvError(f"{what} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _literal(value: str) -> Any:
    """Attack options are typed by Python literal syntax: 1e-3, 10, True, 'cosine' or cosine."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def execute(config: RunConfig, out: str, progress: bool = True) -> dict:
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
    return m


@app.command()
@click.option(
    "--attack", type=str, default="ig", show_default=True, help="attack name (see `gradinv list`)"
)
@click.option("--model", type=str, default="lenet", show_default=True, help="model name")
@click.option(
    "--data",
    type=str,
    default="sample",
    show_default=True,
    help="dataset spec, e.g. sample, digits, cifar10:DIR",
)
@click.option("--batch-size", type=int, default=1, show_default=True, help="client batch size")
@click.option(
    "--clients", type=int, default=1, show_default=True,
    help="K clients with their own batches; the server sees the aggregate",
)  # fmt: skip
@click.option(
    "--composition",
    type=str,
    default="unique",
    show_default=True,
    help="unique | random | same | repeat:K",
)
@click.option(
    "--labels",
    type=str,
    default="known",
    show_default=True,
    help="known, joint, or a label strategy name",
)
@click.option(
    "--share-batch-size/--no-share-batch-size",
    default=True,
    help="whether the server is told the batch size",
)
@click.option(
    "--image-size",
    type=int,
    default=32,
    show_default=True,
    help="images are resized to SIZE x SIZE",
)
@click.option(
    "--iterations",
    type=int,
    default=None,
    show_default=True,
    help="attack iterations (default: the attack's)",
)
@click.option(
    "--restarts",
    type=int,
    default=None,
    show_default=True,
    help="random restarts (default: the attack's)",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="seed for batch, model and attack"
)
@click.option("--dtype", type=str, default="float32", show_default=True, help="float32 | float64")
@click.option("--device", type=str, default="auto", show_default=True, help="auto | cpu | cuda")
@click.option("--protocol", type=str, default="fedsgd", show_default=True, help="fedsgd | fedavg")
@click.option("--local-epochs", type=int, default=1, show_default=True, help="FedAvg local epochs")
@click.option(
    "--local-lr", type=float, default=0.01, show_default=True, help="FedAvg local learning rate"
)
@click.option(
    "--local-batch-size",
    type=int,
    default=None,
    show_default=True,
    help="FedAvg local batch size (default: whole batch)",
)
@click.option(
    "--train-epochs",
    type=int,
    default=0,
    show_default=True,
    help="train the model for N epochs before the round",
)
@click.option(
    "--normalize/--no-normalize",
    default=True,
    help="clients normalise inputs with the dataset's mean/std",
)
@click.option("--model-opt", multiple=True, help="model option KEY=VALUE (repeatable)")
@click.option("--attack-opt", multiple=True, help="attack hyper-parameter KEY=VALUE (repeatable)")
@click.option("--prior", multiple=True, help="prior NAME=WEIGHT (repeatable), e.g. tv=1e-2")
@click.option("--out", type=str, default="runs/attack", show_default=True, help="report directory")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def attack(
    attack: str,
    model: str,
    data: str,
    batch_size: int,
    clients: int,
    composition: str,
    labels: str,
    share_batch_size: bool,
    image_size: int,
    iterations: int,
    restarts: int,
    seed: int,
    dtype: str,
    device: str,
    protocol: str,
    local_epochs: int,
    local_lr: float,
    local_batch_size: int,
    train_epochs: int,
    normalize: bool,
    model_opt: tuple[str, ...],
    attack_opt: tuple[str, ...],
    prior: tuple[str, ...],
    out: str,
    progress: bool,
) -> None:
    """Simulate a client round on a private batch, attack the update, and write a report."""
    model_options = {
        k: parse_option(model, k, v) for k, v in _key_values(model_opt, "model option").items()
    }
    config = RunConfig(
        attack=attack, model=model, data=data, batch_size=batch_size, clients=clients, composition=composition,
        labels=labels, share_batch_size=share_batch_size, image_size=image_size,
        iterations=iterations, restarts=restarts, seed=seed, dtype=dtype, device=device,
        protocol=protocol, local_epochs=local_epochs, local_lr=local_lr,
        local_batch_size=local_batch_size, train_epochs=train_epochs, normalize=normalize,
        model_options=model_options,
        attack_options={k: _literal(v) for k, v in _key_values(attack_opt, "attack option").items()},
        priors=[parse_prior(p) for p in prior],
    )  # fmt: skip
    execute(config, out, progress)


@app.command()
@click.option("--out", default="gradinv-demo", show_default=True, help="report directory")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def demo(out: str, progress: bool) -> None:
    """The main job with all defaults on built-in photos: DLG recovers a private image from LeNet's
    gradient (label not shared: recovered jointly). About a minute on 2 CPU cores."""
    config = RunConfig(attack="dlg", model="lenet", data="sample", labels="joint", iterations=100)
    click.echo(
        "gradinv demo: a client shares LeNet's gradient on one private photo crop; DLG inverts it."
    )
    execute(config, out, progress)
