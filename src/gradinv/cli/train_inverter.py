"""`gradinv train-inverter`: train a learned-inversion network for one shared model, resumably."""

from __future__ import annotations

import click

from ..errors import GradinvError
from ..learned import read_record
from ..learned import train_inverter as train
from ..models import parse_option
from .app import app
from .options import key_values


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise GradinvError(f"--batch-sizes {text!r}: expected integers such as 1,2,4,8") from None
    if not sizes:
        raise GradinvError("--batch-sizes: give at least one batch size")
    return sizes


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise GradinvError(f"{flag} {text!r}: expected comma-separated numbers") from None


@app.command("train-inverter")
@click.option("--model", default="lenet", show_default=True, help="the shared model's name")
@click.option("--model-opt", multiple=True, help="model option KEY=VALUE (repeatable)")
@click.option("--model-seed", type=int, default=0, show_default=True,
              help="seed of the model's initialisation (as `gradinv attack --model-seed`)")  # fmt: skip
@click.option("--data", required=True, help="dataset spec with its split, e.g. fashion-mnist@train")
@click.option("--channels", type=int, required=True, help="1 or 3 (data are converted)")
@click.option("--image-size", type=int, required=True, help="images are resized to SIZE x SIZE")
@click.option("--batch-sizes", default="1", show_default=True,
              help="client batch sizes to invert, e.g. 1,2,4,8 (several: the batch size is "
                   "counted when hidden)")  # fmt: skip
@click.option("--defense", multiple=True,
              help="client defense NAME[:KEY=VALUE,...] trained in (repeatable, in order)")  # fmt: skip
@click.option("--mean", default=None, help="the clients' normalisation mean per channel "
              "(default: the data's channel statistics)")  # fmt: skip
@click.option("--std", default=None, help="the clients' normalisation std per channel")
@click.option("--epochs", type=int, default=10, show_default=True, help="passes over the data")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="weights, order, defense noise"
)
@click.option("--out", required=True, help="directory for inverter.{json,safetensors}")
@click.option(
    "--threads", type=int, default=1, show_default=True, help="torch threads (0: default)"
)
@click.option("--opt", multiple=True,
              help="hyper-parameter KEY=VALUE: hidden, sketch, head, lr, batch, count_weight, "
                   "max_images, val_images (see docs/learned.md)")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="retrain even if --out holds a finished inverter")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def train_inverter(
    model: str, model_opt: tuple[str, ...], model_seed: int, data: str, channels: int,
    image_size: int, batch_sizes: str, defense: tuple[str, ...], mean: str | None,
    std: str | None, epochs: int, seed: int, out: str, threads: int, opt: tuple[str, ...],
    overwrite: bool, progress: bool,
) -> None:  # fmt: skip
    """Train a network that inverts the shared model's updates in one forward pass (Wu et al.,
    "Learning to Invert", UAI 2023), on a dataset's @train split.

    Ctrl-C saves a checkpoint (exit status 130); the same command resumes it and ends with the
    same weights as an uninterrupted run."""
    from ..data import check_channels

    options: dict = dict(key_values(opt, "--opt"))  # typed by the option declarations
    model_options = {
        k: parse_option(model, k, v) for k, v in key_values(model_opt, "model option").items()
    }
    train(
        model, data, check_channels(channels), image_size, _sizes(batch_sizes), list(defense),
        epochs, seed, out, model_seed, model_options, _floats(mean, "--mean"),
        _floats(std, "--std"), progress, overwrite, threads=threads, **options,
    )  # fmt: skip
    record = read_record(out)
    t, d = record["training"], record["data"]
    last = t["losses"][-1] if t["losses"] else {}
    val = last.get("val_psnr")
    click.echo(
        f"trained an inverter for {record['model']['spec']['name']} (batch sizes "
        f"{record['architecture']['batch_sizes']}) on {d['spec']} ({d['train_images']} images) "
        f"for {t['epochs']} epochs in {t['seconds']:.1f} s"
        + (f"; held-out PSNR {val} dB" if val else "")
        + f"; wrote {out}/inverter.safetensors, inverter.json"
    )
