"""Engines run a list of cells and hand each record to the driver's `sink`; they share one
contract (EngineJob) so the result schema cannot depend on the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cells import CellFn
from ..grid import Cell

ENGINES = ("local", "ray", "inline")


@dataclass
class EngineJob:
    cells: list[Cell]  # the cells still to run
    cells_root: str  # DIR/cells
    out: str  # the sweep directory
    cell_fn: CellFn
    workers: int
    threads: int
    sink: Callable[[dict[str, Any]], None]  # called in the driver with each finished record
    kill_workers: Callable[[], None]  # SIGKILL every process this sweep started
    resume: bool = False
    address: str | None = None
