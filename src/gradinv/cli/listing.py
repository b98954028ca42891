"""`gradinv list`: everything that can be named on the command line, and every option."""

from __future__ import annotations

import click

from ..attacks import ATTACKS
from ..data import COMPOSITIONS, DATASETS
from ..defenses import DEFENSES
from ..errors import GradinvError
from ..generative import KINDS as GENERATOR_KINDS
from ..labels import STRATEGIES
from ..models import MODELS, model_options
from ..options import OptionInfo, describe
from ..priors import PRIORS
from .app import app


def _section(title: str, items: dict[str, str]) -> None:
    click.echo(f"{title}:")
    width = max(len(k) for k in items) + 2
    for name, text in items.items():
        click.echo(f"  {name:<{width}}{text}")
    click.echo("")


def _options_of(name: str) -> tuple[str, list[OptionInfo]]:
    """(heading, options) of an attack or a defense; the heading says how to set them."""
    if name in ATTACKS:
        how = "--attack-opt KEY=VALUE; booleans: true/false"
        return f"attack {name} options ({how})", ATTACKS.get(name).describe()
    if name in DEFENSES:
        how = f"--defense {name}:KEY=VALUE,...; booleans: true/false"
        return f"defense {name} options ({how})", describe(DEFENSES.get(name))
    choices = [*ATTACKS.names(), *DEFENSES.names()]
    raise GradinvError(f"no attack or defense named {name!r}; choose from: {', '.join(choices)}")


@app.command("list")
@click.option("--options", "options_of", default=None, metavar="NAME",
              help="print the options of one attack or defense (default, range, meaning)")  # fmt: skip
def list_everything(options_of: str | None) -> None:
    """List attacks, models, datasets, label strategies, compositions, priors, defenses and
    generator kinds."""
    if options_of:
        title, options = _options_of(options_of)
        click.echo(f"{title}:")
        if not options:
            click.echo("  (none)")
        for o in options:
            valid = f"  [{o.valid}]" if o.valid else ""
            click.echo(f"  {o.name} = {o.default!r} ({o.type}){valid}")
            click.echo(f"      {o.help}")
        return
    _section("attacks (`gradinv list --options NAME` for their options)", ATTACKS.describe())
    models = {n: f"{d}  options: {model_options(n) or '-'}" for n, d in MODELS.describe().items()}
    _section("models", models)
    _section("datasets", DATASETS)
    _section("label strategies (--labels)", {"known": "labels are shared with the server",
             "joint": "optimise soft labels with the images (DLG)", **STRATEGIES.describe()})  # fmt: skip
    _section("compositions", COMPOSITIONS)
    _section("priors (--prior NAME=WEIGHT)", PRIORS.describe())
    _section("defenses (--defense NAME[:KEY=VALUE,...]; list --options NAME)", DEFENSES.describe())
    _section("generator kinds (train-generator --kind)", GENERATOR_KINDS.describe())
