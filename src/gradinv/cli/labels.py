"""`gradinv labels`: recover the label multiset of one simulated client round and score it."""

from __future__ import annotations

import json
from typing import Any

import click

from ..experiments.labels import measure_config
from ..pipeline import RunConfig
from .app import app
from .options import round_config, round_options


@app.command("labels")
@click.option(
    "--strategy", default="auto", show_default=True, help="label strategy (see `gradinv list`)"
)
@round_options(batch_size=8, composition="random")
@click.option("--json", "as_json", is_flag=True, help="print exactly one JSON object")
def labels(strategy: str, as_json: bool, **round: Any) -> None:
    """Simulate a client round (labels hidden from the server), recover the labels, score them."""
    config = RunConfig(labels=strategy, **round_config(round))
    model, composition = config.model, config.composition
    result = measure_config(config, strategy)
    if as_json:
        click.echo(json.dumps(result))
        return
    est = result["batch_size_estimate"] or {}
    b = result["batch_size"]
    if result["labels_recovered"] is None:
        click.echo(
            f"{strategy} on {model} ({composition}): the batch size is hidden and this model's "
            f"update cannot reveal it (at least {est.get('at_least')}); no labels recovered"
        )
        return
    click.echo(
        f"{strategy} on {model} (B={b}, {composition}): count accuracy "
        f"{result['count_accuracy']:.3f}, exact {result['exact']}, {1000 * result['time_s']:.1f} ms"
    )
    click.echo(f"  true      {result['labels_true']}")
    click.echo(f"  recovered {result['labels_recovered']}")
    if not result["batch_size_known"]:
        click.echo(
            f"  batch size estimated from the update: {est.get('estimate')} (confidence "
            f"{est.get('confidence', 0):.2f}, layer {est.get('layer')})"
        )
