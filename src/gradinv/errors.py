"""One exception type for every problem a user can cause; the CLI turns it into a one-line message."""

from __future__ import annotations

from collections.abc import Iterable


class GradinvError(ValueError):
    """Bad input from the user: unknown name, impossible value, unreadable file, shape mismatch."""


def unknown(kind: str, name: str, choices: Iterable[str]) -> GradinvError:
    """Error for an unknown registry name, listing the valid choices."""
    return GradinvError(f"unknown {kind} {name!r}; choose from: {', '.join(sorted(choices))}")


def require(condition: bool, message: str) -> None:
    """Raise a GradinvError with `message` unless `condition` holds."""
    if not condition:
        raise GradinvError(message)


class Interrupted(Exception):
    """Ctrl-C after the work done so far was saved: the CLI prints `message` and exits 130."""
