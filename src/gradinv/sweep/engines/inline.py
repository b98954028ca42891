"""The inline engine: cells run one after another in the driver's own process — no worker start
(seconds per worker on a small machine), for small grids, debugging and tests. Ctrl-C stops the
cell that is running; finished cells are kept."""

from __future__ import annotations

from ..cells import execute_cell, set_threads
from . import EngineJob


def run_inline(job: EngineJob) -> None:
    set_threads(job.threads)
    for cell in job.cells:
        job.sink(execute_cell(job.cell_fn, cell.id, cell.config, job.cells_root))
