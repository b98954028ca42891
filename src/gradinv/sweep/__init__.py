"""Sweeps: a grid of cells (by default `gradinv attack` runs) on a local process pool or Ray Tune,
one results.jsonl line per cell, resumable after a crash, summarised in summary.md.

    from gradinv.sweep import Grid, load_grid, run_sweep, read_results
    grid = Grid(base={"attack": "dlg", "model": "mlp4"}, axes={"seed": [0, 1, 2]})
    result = run_sweep(grid, "runs/sweep", workers=2)           # or engine="ray"
    rows = read_results("runs/sweep")                             # {cell ID: record}

Experiments run arbitrary cells with their own settings:

    grid = Grid(base={...}, axes={...}, settings=None)            # None: any setting names
    run_sweep(grid, out, cell_fn=my_cell, check_fn=None)          # my_cell(config, dir) -> metrics
"""

from .cells import RECORD, CellFn, attack_cell, check_attack_config, execute_cell
from .grid import Cell, Grid, attack_settings, load_grid
from .results import RESULTS, read_records, read_results, succeeded
from .runner import SweepResult, cleanup, run_sweep
from .summary import write_summary

__all__ = [
    "RECORD",
    "RESULTS",
    "Cell",
    "CellFn",
    "Grid",
    "SweepResult",
    "attack_cell",
    "attack_settings",
    "check_attack_config",
    "cleanup",
    "execute_cell",
    "load_grid",
    "read_records",
    "read_results",
    "run_sweep",
    "succeeded",
    "write_summary",
]
