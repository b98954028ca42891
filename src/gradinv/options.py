"""Typed, documented hyper-parameters for every configurable object (attacks, defenses, priors, ...).

Each object is a dataclass whose fields are declared with `option(default, help, ...)`: the help
text and the valid range live next to the default, so `gradinv list --options NAME` can print them
and one validator checks every value, whether it comes from Python or from a `KEY=VALUE` string on
the command line. One syntax everywhere: booleans are true/false (also 1/0, yes/no), numbers must
be finite, tuples are comma-separated or Python literals.

    @dataclass
    class Noise:
        std: float = option(0.01, "standard deviation of the Gaussian noise", low=0)
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from .errors import GradinvError

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A dataclass field carrying its meaning and valid range ([low, high], open ends optional)."""
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": tuple(choices) if choices is not None else None}  # fmt: skip
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionInfo:
    """One documented option: what `gradinv list --options` prints."""

    name: str
    default: Any
    type: str
    help: str
    valid: str


def _kind(default: Any) -> type:
    if isinstance(default, bool):
        return bool
    if isinstance(default, (tuple, list)):
        return tuple
    return type(default)


def range_text(f: Field) -> str:
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(str(c) for c in m["choices"])
    low, high = m.get("low"), m.get("high")
    if low is None and high is None:
        return ""
    left = "(" if m.get("low_open") else "["
    right = ")" if m.get("high_open") else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    if low is not None and high is None:
        return f"> {lo}" if m.get("low_open") else f">= {lo}"
    if high is not None and low is None:
        return f"< {hi}" if m.get("high_open") else f"<= {hi}"
    return f"{left}{lo}, {hi}{right}"


def documented(cls: type, skip: Iterable[str] = ("progress",)) -> list[Field]:
    """The dataclass fields of `cls` that are options (declared with `option`)."""
    return [f for f in fields(cls) if f.name not in skip and f.init]


def describe(cls: type, skip: Iterable[str] = ("progress",)) -> list[OptionInfo]:
    """Every option of `cls` with its default, type, meaning and valid range."""
    out = []
    for f in documented(cls, skip):
        default = f.default if f.default is not MISSING else None
        kind = "any" if default is None else _kind(default).__name__
        out.append(OptionInfo(f.name, default, kind, f.metadata.get("help", ""), range_text(f)))
    return out


def _in(text: str) -> str:
    return f"in {text}" if text[:1] in "[(" else text


def parse_bool(text: str, what: str) -> bool:
    low = text.strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise GradinvError(f"{what}={text!r}: expected true or false")


def parse_text(text: str, default: Any, what: str) -> Any:
    """Convert a command-line string to the type of `default` (None default: a Python literal or
    the string itself)."""
    kind = _kind(default) if default is not None else None
    if kind is bool:
        return parse_bool(text, what)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise GradinvError(
                f"{what}={text!r} must be of type int (default {default!r})"
            ) from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise GradinvError(
                f"{what}={text!r} must be of type float (default {default!r})"
            ) from None
    if kind is tuple:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = tuple(v.strip() for v in text.split(",") if v.strip())
        if not isinstance(value, (tuple, list)):
            value = (value,)
        return tuple(value)
    if kind is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return text


def check_value(owner: str, f: Field, value: Any) -> Any:
    """Validate (and, for strings from the command line, convert) one option value."""
    what = f"{owner}: option {f.name}"
    default = f.default if f.default is not MISSING else None
    if isinstance(value, str) and default is not None and not isinstance(default, str):
        value = parse_text(value, default, what)
    if default is not None:
        kind = _kind(default)
        ok = (
            isinstance(value, bool)
            if kind is bool
            else isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is float
            else isinstance(value, int) and not isinstance(value, bool)
            if kind is int
            else isinstance(value, (tuple, list))
            if kind is tuple
            else isinstance(value, kind)
        )
        if not ok:
            raise GradinvError(
                f"{what}={value!r} must be of type {kind.__name__} (default {default!r})"
            )
        if kind is tuple:
            value = tuple(value)
        if kind is float:
            value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise GradinvError(f"{what}={value!r} must be a finite number")
    m = f.metadata
    if m.get("choices") and value not in m["choices"]:
        raise GradinvError(
            f"{what}={value!r}; choose from: {', '.join(str(c) for c in m['choices'])}"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = m.get("low"), m.get("high")
        bad = (
            (low is not None and (value <= low if m.get("low_open") else value < low))
            or (high is not None and (value >= high if m.get("high_open") else value > high))
        )  # fmt: skip
        if bad:
            raise GradinvError(f"{what} must be {_in(range_text(f))}, got {value!r}")
    return value


def build(cls: type, owner: str, options: dict[str, Any], skip: Iterable[str] = ()) -> Any:
    """Instantiate the options dataclass `cls` from `options` (typed values or strings), checking
    names, types and ranges; unknown names list the valid ones."""
    valid = {f.name: f for f in fields(cls) if f.init}
    for key in options:
        if key not in valid or key in skip:
            names = ", ".join(sorted(k for k in valid if k not in skip))
            raise GradinvError(f"{owner} has no option {key!r}; valid options: {names}")
    checked = {k: check_value(owner, valid[k], v) for k, v in options.items()}
    try:
        return cls(**checked)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, GradinvError):
            raise
        raise GradinvError(f"{owner}: bad option ({exc})") from None


def validate(obj: Any, owner: str, skip: Iterable[str] = ("progress",)) -> None:
    """Check every option of an existing instance (e.g. one built directly from Python)."""
    for f in documented(type(obj), skip):
        check_value(owner, f, getattr(obj, f.name))


def key_values(pairs: Iterable[str], what: str) -> dict[str, str]:
    """'KEY=VALUE' strings as a dict, with a clear error for anything else."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise GradinvError(f"{what} {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def parse_spec(spec: str, what: str) -> tuple[str, dict[str, str]]:
    """'NAME:KEY=VALUE,KEY=VALUE' (the --defense syntax) -> (NAME, {KEY: VALUE})."""
    name, _, rest = spec.partition(":")
    if not name:
        raise GradinvError(f"{what} {spec!r}: expected NAME[:KEY=VALUE,...]")
    pairs = [p for p in rest.split(",") if p.strip()] if rest else []
    return name.strip(), key_values(pairs, f"{what} {name}")
