"""Options every experiment command shares: where its runs go and how (the sweep runner)."""

from __future__ import annotations

from collections.abc import Callable

import click


def runner_options(command: Callable) -> Callable:
    """--engine, --workers, --resume and --overwrite, passed through to the sweep runner."""
    for decorator in reversed([
        click.option("--engine", type=click.Choice(["local", "ray", "inline"]), default="local",
                     show_default=True, help="how the runs execute (see `gradinv sweep`)"),
        click.option("--workers", type=int, default=1, show_default=True,
                     help="runs at once (local/ray engines)"),
        click.option("--resume", is_flag=True,
                     help="continue an interrupted experiment: finished runs are kept"),
        click.option("--overwrite", is_flag=True, help="replace earlier results in --out"),
    ]):  # fmt: skip
        command = decorator(command)
    return command
