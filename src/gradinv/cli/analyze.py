"""`gradinv analyze`: R-GAP's rank analysis of a model, as a table and JSON."""

from __future__ import annotations

import json

import click
import torch

from ..analysis import rank_table
from ..errors import GradinvError
from ..models import build_model, parse_option
from ..options import key_values
from ..report import check_output_file
from .app import app


@app.command()
@click.option("--model", type=str, default="cnn6", show_default=True, help="model name")
@click.option("--image-size", type=int, default=32, show_default=True, help="input is SIZE x SIZE")
@click.option("--channels", type=int, default=3, show_default=True, help="input channels")
@click.option("--classes", type=int, default=10, show_default=True, help="number of classes")
@click.option("--model-opt", multiple=True, help="model option KEY=VALUE (repeatable)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed for weights and k")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of the table")
@click.option("--out", type=str, default=None, help="also save the JSON to this file")
def analyze(
    model: str,
    image_size: int,
    channels: int,
    classes: int,
    model_opt: tuple[str, ...],
    seed: int,
    as_json: bool,
    out: str | None,
) -> None:
    """Per layer: unknowns of the layer's input, gradient and forward equations, rank of the
    stacked system and the deficit (R-GAP, Zhu & Blaschko 2021). Deficit 0 on every layer: R-GAP's
    closed form determines the input; a positive deficit predicts where recovery fails."""
    if image_size < 4 or channels < 1 or classes < 2 or seed < 0:
        raise GradinvError("image size must be >= 4, channels >= 1, classes >= 2 and seed >= 0")
    if out:
        check_output_file(out)
    pairs = key_values(model_opt, "model option")
    options = {key: parse_option(model, key, value) for key, value in pairs.items()}
    torch.manual_seed(seed)
    shape = (channels, image_size, image_size)
    net = build_model(model, shape, classes, **options).double()
    rows = rank_table(net, shape, seed)
    report = {
        "model": model,
        "input_shape": list(shape),
        "full_rank": all(r.deficit == 0 for r in rows),
        "layers": [r.to_dict() for r in rows],
    }
    text = json.dumps(report, indent=2)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
    if as_json:
        click.echo(text)
        return
    header = f"{'layer':<8}{'kind':<8}{'input':<14}{'unknowns':>9}{'grad eq':>9}{'fwd eq':>9}"
    header += f"{'rank':>7}{'deficit':>9}  invertible act."
    click.echo(f"rank analysis of {model} on {'x'.join(map(str, shape))} inputs (batch size 1)")
    click.echo(header)
    for r in rows:
        click.echo(
            f"{r.layer:<8}{r.kind:<8}{'x'.join(map(str, r.input_shape)):<14}{r.unknowns:>9}"
            f"{r.gradient_equations:>9}{r.forward_equations:>9}{r.rank:>7}{r.deficit:>9}  "
            f"{'yes' if r.invertible_activation else 'NO'}"
        )
    verdict = (
        "full rank: R-GAP is exact"
        if report["full_rank"]
        else "rank deficient: R-GAP cannot determine the input"
    )
    click.echo(verdict)
    if out:
        click.echo(f"saved {out}")
