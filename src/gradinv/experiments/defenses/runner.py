"""Running the cells through the sweep runner (`gradinv.sweep.run_sweep`): one axis, `cell`,
holds the experiment's cell configs, so every sweep feature applies — local process pool or Ray
(`engine`), `workers`, `resume` after a crash (finished cells are kept), one directory per cell
under `<out>/sweep/cells/`, results.jsonl."""

from __future__ import annotations

import os
import shutil
from typing import Any

from ...errors import GradinvError
from ...sweep import Grid, run_sweep
from .cell import cell, run_config

SWEEP = "sweep"  # the sweep's directory inside the experiment's --out


def check_cell(config: dict[str, Any]) -> None:
    """Every cell checked before any runs (as `gradinv attack` checks its settings): names,
    options and defense specs; the generator is not trained here."""
    from ...attacks import make_attack
    from ...defenses import parse_defense
    from ...pipeline import attack_kwargs, check
    from .grid import NONE

    config = config.get("cell", config)
    if config["defense"] != NONE:
        parse_defense(config["defense"])
    if config["kind"] != "attack":
        return
    rc = run_config({**config, "generator": None})
    if config.get("generator"):
        rc.attack_options["generator"] = "untrained"
    check(rc)
    make_attack(rc.attack, progress=False, **attack_kwargs(rc))


def run_cells(
    cells: list[dict[str, Any]],
    out: str,
    engine: str = "local",
    workers: int = 1,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """Run the cells in `<out>/sweep` and return (one record per cell in the cells' order,
    the sweep directory). An earlier sweep there is continued (`resume`), replaced
    (`overwrite`), or an error."""
    directory = os.path.join(out, SWEEP)
    if os.path.isdir(directory) and not resume:
        if not overwrite:
            raise GradinvError(f"{out!r} holds an earlier (maybe unfinished) run in {SWEEP}/; "
                               "pass --resume to continue it or --overwrite to replace it")  # fmt: skip
        shutil.rmtree(directory)
    grid = Grid(base={}, axes={"cell": cells}, settings=None)
    result = run_sweep(grid, directory, engine=engine, workers=workers, resume=resume,
                       threads=1, cell_fn=cell, check_fn=check_cell, progress=progress,
                       metrics=())  # fmt: skip
    records = []
    for c in result.cells:
        record = result.records.get(c.id)
        if record is None:
            raise GradinvError(f"cell {c.id} did not run; rerun with --resume")
        records.append({**record, "config": c.config["cell"], "dir": c.id})
    return records, directory
