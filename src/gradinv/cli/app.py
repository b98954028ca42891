"""The click application; each command lives in its own module of this package and registers here."""

from __future__ import annotations

import click


@click.group(
    name="gradinv",
    help="Measure how much federated-learning updates leak: gradient inversion attacks and metrics.",
)
def app() -> None:
    pass


@app.group("experiment")
def experiment_app() -> None:
    """Reproduce the literature's experiments with one command."""
