"""Command-line interface. Every user error is one line on stderr and exit status 2, no traceback;
Ctrl-C keeps the work done and exits 130."""

from __future__ import annotations

import sys

import click

from ..errors import GradinvError, Interrupted
from . import attack, audit, experiment_labels, labels, listing, observe  # noqa: F401  (registration)
from .analyze import analyze  # noqa: F401  (registration)
from .app import app
from .experiment_aux import aux_distribution  # noqa: F401  (registration)
from .experiment_defenses import defenses  # noqa: F401  (registration)
from .experiment_discard import information_discard  # noqa: F401  (registration)
from .experiment_learned import learned_inversion  # noqa: F401  (registration)
from .sweep import sweep  # noqa: F401  (registration)
from .train_generator import train_generator  # noqa: F401  (registration)
from .train_inverter import train_inverter  # noqa: F401  (registration)


def main(argv: list[str] | None = None) -> int:
    try:
        code = app.main(args=argv, prog_name="gradinv", standalone_mode=False)
    except GradinvError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Interrupted as exc:
        click.echo(f"interrupted: {exc}", err=True)
        return 130
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return 130
    # click returns the status of a command that ended with ctx.exit(N) (sweep: 1 = cells failed)
    return code if isinstance(code, int) else 0


def entry() -> None:
    sys.exit(main())
