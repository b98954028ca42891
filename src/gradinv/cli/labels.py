"""`gradinv labels`: recover the label multiset of one simulated client round and score it."""

from __future__ import annotations

import json

import click

from ..experiments.labels import measure_config
from ..pipeline import RunConfig
from .app import app


@app.command("labels")
@click.option(
    "--strategy",
    type=str,
    default="auto",
    show_default=True,
    help="label strategy (see `gradinv list`)",
)
@click.option("--model", type=str, default="lenet", show_default=True, help="model name")
@click.option("--data", type=str, default="sample", show_default=True, help="dataset spec")
@click.option("--batch-size", type=int, default=8, show_default=True, help="client batch size")
@click.option(
    "--composition",
    type=str,
    default="random",
    show_default=True,
    help="unique | random | same | repeat:K",
)
@click.option("--seed", type=int, default=0, show_default=True, help="seed for batch and model")
@click.option(
    "--train-epochs",
    type=int,
    default=0,
    show_default=True,
    help="train the model for N epochs before the round",
)
@click.option("--protocol", type=str, default="fedsgd", show_default=True, help="fedsgd | fedavg")
@click.option("--local-epochs", type=int, default=1, show_default=True, help="FedAvg local epochs")
@click.option(
    "--local-lr", type=float, default=0.01, show_default=True, help="FedAvg local learning rate"
)
@click.option(
    "--share-batch-size/--no-share-batch-size",
    default=True,
    help="whether the server is told B (otherwise it is estimated)",
)
@click.option("--image-size", type=int, default=32, show_default=True, help="image side")
@click.option("--device", type=str, default="cpu", show_default=True, help="auto | cpu | cuda")
@click.option("--json", "as_json", is_flag=True, help="print exactly one JSON object")
def labels(
    strategy: str, model: str, data: str, batch_size: int, composition: str, seed: int,
    train_epochs: int, protocol: str, local_epochs: int, local_lr: float,
    share_batch_size: bool, image_size: int, device: str, as_json: bool,
) -> None:  # fmt: skip
    """Simulate a client round (labels hidden from the server), recover the labels, score them."""
    config = RunConfig(
        model=model, data=data, batch_size=batch_size, composition=composition, seed=seed,
        train_epochs=train_epochs, protocol=protocol, local_epochs=local_epochs,
        local_lr=local_lr, share_batch_size=share_batch_size, image_size=image_size,
        device=device, labels=strategy,
    )  # fmt: skip
    result = measure_config(config, strategy)
    if as_json:
        click.echo(json.dumps(result))
        return
    est = result["batch_size_estimate"] or {}
    click.echo(
        f"{strategy} on {model} (B={result['batch_size']}, {composition}): count accuracy "
        f"{result['count_accuracy']:.3f}, exact {result['exact']}, {1000 * result['time_s']:.1f} ms"
    )
    click.echo(f"  true      {result['labels_true']}")
    click.echo(f"  recovered {result['labels_recovered']}")
    if "estimate" in est:
        click.echo(
            f"  batch-size estimate {est['estimate']} (confidence {est['confidence']:.2f}, "
            f"layer {est['layer']})"
        )
