"""`gradinv train-generator`: train a generator prior on a @train split, resumably."""

from __future__ import annotations

import click

from ..generative import train_generator as train
from ..generative.store import read_record
from .app import app
from .options import key_values


@app.command("train-generator")
@click.option("--data", required=True, help="dataset spec with its split, e.g. fashion-mnist@train")
@click.option("--channels", type=str, required=True, help="1 or 3 (data are converted)")
@click.option("--image-size", type=int, required=True, help="images are resized to SIZE x SIZE")
@click.option("--kind", default="dcgan", show_default=True, help="generator kind")
@click.option("--epochs", type=int, default=5, show_default=True, help="passes over the data")
@click.option("--seed", type=int, default=0, show_default=True, help="weights, noise and order")
@click.option(
    "--out", required=True, help="directory for generator.{json,safetensors}, samples.png"
)
@click.option(
    "--threads", type=int, default=1, show_default=True, help="torch threads (0: default)"
)
@click.option("--batch-size", type=int, default=64, show_default=True, help="images per step")
@click.option("--max-images", type=int, default=0, show_default=True, help="0: all images")
@click.option("--opt", multiple=True, help="architecture/training option KEY=VALUE (e.g. width=16)")
@click.option("--overwrite", is_flag=True, help="retrain even if --out holds a finished generator")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def train_generator(
    data: str,
    channels: str,
    image_size: int,
    kind: str,
    epochs: int,
    seed: int,
    out: str,
    threads: int,
    batch_size: int,
    max_images: int,
    opt: tuple[str, ...],
    overwrite: bool,
    progress: bool,
) -> None:
    """Train a generator (a GAN prior for generative attacks) on a dataset's @train split.

    Ctrl-C saves a checkpoint (exit status 130); the same command resumes it and ends with the
    same weights as an uninterrupted run."""
    from ..data import check_channels

    options = {k: _number(v) for k, v in key_values(opt, "--opt").items()}
    options |= {"threads": threads, "batch_size": batch_size, "max_images": max_images}
    train(
        data,
        check_channels(channels),
        image_size,
        kind=kind,
        epochs=epochs,
        seed=seed,
        out=out,
        progress=progress,
        overwrite=overwrite,
        **options,
    )
    record = read_record(out)
    t = record["training"]
    click.echo(
        f"trained {record['kind']} ({record['parameters']} parameters) on {record['data']['spec']} "
        f"({record['data']['images']} images) for {t['epochs']} epochs in {t['seconds']:.1f} s; "
        f"wrote {out}/generator.safetensors, generator.json, samples.png"
    )


def _number(text: str) -> int | float | str:
    """'16' -> 16, '2e-4' -> 0.0002; anything else stays text (the option checker names it)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
