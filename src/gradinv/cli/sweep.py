"""`gradinv sweep GRID.yaml --out DIR`: run a grid of attack runs, resumably."""

from __future__ import annotations

import os

import click

from ..sweep import load_grid, run_sweep
from .app import app


@app.command()
@click.argument("grid_file", metavar="GRID.yaml")
@click.option("--out", required=True, help="sweep directory (results.jsonl, cells/, summary.md)")
@click.option(
    "--engine", type=click.Choice(["local", "ray", "inline"]), default="local", show_default=True,
    help="local: a process pool on this machine; ray: Ray Tune (pip install 'gradinv[ray]'); "
    "inline: one cell after another in this process",
)  # fmt: skip
@click.option("--workers", type=int, default=1, show_default=True, help="cells run at once")
@click.option("--address", default=None, help="join a running Ray cluster (with --engine ray)")
@click.option("--resume", is_flag=True, help="continue the sweep in DIR: finished cells are kept")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads per cell")
@click.option("--progress/--no-progress", default=True, help="show cells done / total and an ETA")
def sweep(
    grid_file: str, out: str, engine: str, workers: int, address: str | None, resume: bool,
    threads: int, progress: bool,
) -> None:  # fmt: skip
    """Run every cell of a grid (base settings x swept settings) and summarise them.

    Exit status: 0 when every cell succeeded, 1 when some cells failed (recorded in
    results.jsonl; --resume retries them), 2 for a bad grid or option, 130 on Ctrl-C."""
    grid = load_grid(grid_file)
    result = run_sweep(grid, out, engine=engine, workers=workers, resume=resume, threads=threads,
                       address=address, progress=progress)  # fmt: skip
    ran = len(result.records) - result.skipped
    click.echo(
        f"sweep: {len(result.records)}/{len(result.cells)} cells recorded ({ran} this run, "
        f"{result.skipped} already done), {len(result.failed)} failed"
    )
    click.echo(f"results: {os.path.join(os.path.abspath(out), 'results.jsonl')}")
    click.echo(f"summary: {os.path.abspath(result.summary)}")
    if result.failed:
        click.echo(
            f"{len(result.failed)} of {len(result.cells)} cells failed; their errors are in "
            "results.jsonl and summary.md (--resume retries them)",
            err=True,
        )
        raise click.exceptions.Exit(1)
