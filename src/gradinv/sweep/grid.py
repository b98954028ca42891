"""Grid files: `base` settings plus `grid` (setting -> list of values), expanded into cells.

A cell's config holds every setting (defaults filled in), so results.jsonl is self-describing and
a cell reruns from its line alone. Settings are read from `gradinv.pipeline.RunConfig` at run time
(never hard-coded: RunConfig grows), or given explicitly for experiments with their own cells.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import GradinvError

HASH_CHARS = 10  # 40 bits: collisions are checked anyway, and IDs stay short enough to read
SLUG_CHARS = 60


def attack_settings() -> dict[str, Any]:
    """The settings of `gradinv attack` with their defaults: RunConfig's fields, read at run time."""
    from ..pipeline import RunConfig

    out: dict[str, Any] = {}
    for f in dataclasses.fields(RunConfig):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None  # required field: the grid must set it
    # config.yaml writes priors as lists; a cell config must round-trip through JSON the same way
    return json.loads(json.dumps(out))


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: a stable ID, every setting, and the swept settings' values."""

    id: str
    config: dict[str, Any]
    swept: dict[str, Any]  # dotted setting -> value, in grid order


def canonical(value: Any) -> str:
    """The JSON text that identifies a value (key order does not matter, types do: 1 != 1.0)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def cell_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:HASH_CHARS]


def _slug(swept: Mapping[str, Any]) -> str:
    """Readable part of an ID: leaf-value pairs, restricted to characters safe in any file name."""
    parts = []
    for key, value in swept.items():
        text = value if isinstance(value, str) else canonical(value)
        parts.append(f"{key.rsplit('.', 1)[-1]}-{text}")
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(parts))
    return slug.strip("-_.")[:SLUG_CHARS].rstrip("-_.")


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key, creating nested dicts below an existing dict setting."""
    *heads, leaf = key.split(".")
    node = config
    for i, head in enumerate(heads):
        node = node.setdefault(head, {})
        if not isinstance(node, dict):
            path = ".".join(heads[: i + 1])
            raise GradinvError(f"setting {path!r} is not a dict, so {key!r} cannot be set")
    node[leaf] = value


@dataclass
class Grid:
    """`base` settings and `axes` (setting -> values, in file order); `settings` maps each valid
    setting to its default (None: any setting, for cells that are not attack runs)."""

    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    settings: dict[str, Any] | None = field(default_factory=attack_settings)

    def __post_init__(self) -> None:
        if not isinstance(self.base, Mapping):
            raise GradinvError(f"grid 'base' must be a mapping of settings, got {self.base!r}")
        if not isinstance(self.axes, Mapping):
            raise GradinvError(f"grid 'grid' must be a mapping setting -> list, got {self.axes!r}")
        for key in self.base:
            self._check_key(key, "base")
        for key, values in self.axes.items():
            self._check_key(key, "grid")
            if not isinstance(values, list):
                raise GradinvError(
                    f"grid setting {key!r} must be a list of values, got {values!r}; "
                    f"write {key}: [{canonical(values)}]"
                )
            if not values:
                raise GradinvError(f"grid setting {key!r} has an empty list of values")
            seen: set[str] = set()
            for value in values:
                if canonical(value) in seen:
                    raise GradinvError(f"grid setting {key!r} lists the value {value!r} twice")
                seen.add(canonical(value))
        keys = list(self.axes)
        for a in keys:
            for b in keys:
                if b.startswith(a + "."):
                    raise GradinvError(f"grid sweeps both {a!r} and {b!r}; sweep one of them")
            for b in self.base:
                if b.startswith(a + "."):  # the swept dict would silently replace it
                    raise GradinvError(f"base sets {b!r} but the grid sweeps all of {a!r}")

    def _check_key(self, key: Any, where: str) -> None:
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise GradinvError(f"{where}: bad setting name {key!r}")
        if self.settings is None:
            return
        head = key.split(".", 1)[0]
        if head not in self.settings:
            raise GradinvError(
                f"{where}: unknown setting {key!r}; valid settings: {', '.join(self.settings)}"
            )
        if "." in key and not isinstance(self.settings[head], dict):
            raise GradinvError(
                f"{where}: setting {head!r} is not a dict, so {key!r} cannot be swept"
            )

    def __len__(self) -> int:
        n = 1
        for values in self.axes.values():
            n *= len(values)
        return n

    def cells(self) -> list[Cell]:
        """The cartesian product in file order (the last setting varies fastest)."""
        start = copy.deepcopy(self.settings) if self.settings is not None else {}
        for key, value in self.base.items():
            _set(start, key, copy.deepcopy(value))
        cells: list[Cell] = []
        by_hash: dict[str, Cell] = {}
        for combo in itertools.product(*self.axes.values()):
            config = copy.deepcopy(start)
            swept = dict(zip(self.axes, combo, strict=True))
            for key, value in swept.items():
                _set(config, key, copy.deepcopy(value))
            config = json.loads(json.dumps(config))  # tuples -> lists, as results.jsonl stores them
            slug = _slug(swept)
            digest = cell_hash(config)
            cell = Cell(f"{slug}_{digest}" if slug else digest, config, swept)
            if digest in by_hash:  # same settings (or, astronomically rarely, a hash collision)
                other = by_hash[digest]
                raise GradinvError(
                    f"duplicate cells: {other.swept} and {cell.swept} give the same settings"
                )
            by_hash[digest] = cell
            cells.append(cell)
        return cells

    def to_dict(self) -> dict[str, Any]:
        return {"base": copy.deepcopy(self.base), "grid": copy.deepcopy(self.axes)}

    @classmethod
    def from_dict(
        cls, data: Any, settings: dict[str, Any] | None | str = "attack", source: str = "grid"
    ) -> Grid:
        """`{"base": {...}, "grid": {...}}`; settings "attack" means RunConfig's."""
        if not isinstance(data, Mapping):
            raise GradinvError(f"{source}: expected a mapping with 'base' and 'grid', got {data!r}")
        extra = [k for k in data if k not in ("base", "grid")]
        if extra:
            raise GradinvError(f"{source}: unknown top-level key {extra[0]!r}; expected base, grid")
        spec = attack_settings() if settings == "attack" else settings
        return cls(dict(data.get("base") or {}), dict(data.get("grid") or {}), spec)  # type: ignore[arg-type]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads 1e-4 as a string; grid files mean the number (YAML 1.2's float syntax)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$",
    ),
    list("-+0123456789."),
)


def load_grid(path: str, settings: dict[str, Any] | None | str = "attack") -> Grid:
    """Read and validate a grid file (nothing runs before it is valid)."""
    try:
        with open(path) as fh:
            data = yaml.load(fh, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise GradinvError(f"cannot read grid file {path!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise GradinvError(f"grid file {path!r} is not valid YAML: {first}") from None
    return Grid.from_dict(data, settings, source=path)
