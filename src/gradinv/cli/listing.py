"""`gradinv list`: everything that can be named on the command line."""

from __future__ import annotations

import click

from ..attacks import ATTACKS
from ..data import COMPOSITIONS, DATASETS
from ..generative import KINDS as GENERATOR_KINDS
from ..labels import STRATEGIES
from ..models import MODELS, model_options
from ..priors import PRIORS
from .app import app


def _section(title: str, items: dict[str, str]) -> None:
    click.echo(f"{title}:")
    width = max(len(k) for k in items) + 2
    for name, text in items.items():
        click.echo(f"  {name:<{width}}{text}")
    click.echo("")


@app.command("list")
def list_everything() -> None:
    """List attacks, models, datasets, label strategies, compositions, priors, generator kinds."""
    _section("attacks", ATTACKS.describe())
    models = {n: f"{d}  options: {model_options(n) or '-'}" for n, d in MODELS.describe().items()}
    _section("models", models)
    _section("datasets", DATASETS)
    _section("label strategies (--labels)", {"known": "labels are shared with the server",
             "joint": "optimise soft labels with the images (DLG)", **STRATEGIES.describe()})  # fmt: skip
    _section("compositions", COMPOSITIONS)
    _section("priors (--prior NAME=WEIGHT)", PRIORS.describe())
    _section("generator kinds (train-generator --kind)", GENERATOR_KINDS.describe())
