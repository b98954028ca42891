"""The driver: validate, prepare the directory, run the missing cells on an engine, record each
finished cell in results.jsonl (this process is the only writer), summarise.

DIR layout: grid.yaml (the grid as run), results.jsonl, cells/<ID>/ (each cell's files and its
record), summary.md, plots/, ray/ (Tune's storage, ray engine), .sweep/ (lock, session tokens).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from tqdm import tqdm

from ..errors import GradinvError
from . import procs
from .cells import TMP, CellFn, attack_cell, check_attack_config, stored_record
from .engines import ENGINES, EngineJob
from .grid import Cell, Grid
from .results import RESULTS, append_record, encode, read_results, succeeded
from .summary import write_summary

STATE = ".sweep"
INSTALL_RAY = "the ray engine needs Ray: pip install 'gradinv[ray]'"


@dataclass
class SweepResult:
    out: str
    cells: list[Cell]
    records: dict[str, dict[str, Any]]  # latest record of each cell of the grid that ran
    summary: str
    skipped: int = 0  # cells already finished before this run (resume)
    failed: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return not self.failed and len(self.records) == len(self.cells)


def _with_threads(grid: Grid, threads: int) -> Grid:
    """A `threads` setting the grid leaves unset (RunConfig's) becomes the sweep's thread count:
    numbers depend on it, so each cell's config and ID record it."""
    if grid.settings is None or "threads" not in grid.settings or "threads" in grid.axes:
        return grid
    if grid.base.get("threads", grid.settings["threads"]) is not None:
        return grid
    return Grid({**grid.base, "threads": threads}, dict(grid.axes), grid.settings)


def _precheck(cells: Sequence[Cell], check_fn: Callable[[dict[str, Any]], None] | None) -> None:
    if check_fn is None:
        return
    for cell in cells:
        try:
            check_fn(cell.config)
        except GradinvError as exc:
            raise GradinvError(f"cell {cell.id}: {exc}") from None


def _prepare_dir(out: str, resume: bool) -> None:
    state = os.path.join(out, STATE)
    if os.path.isdir(out) and os.listdir(out):
        if not resume:
            raise GradinvError(
                f"output directory {out!r} is not empty; use --resume to continue the sweep in it, "
                "or choose another --out"
            )
        if not os.path.isdir(state):
            raise GradinvError(
                f"{out!r} is not a sweep directory (no {STATE}/); choose another --out"
            )
    try:
        os.makedirs(os.path.join(out, "cells"), exist_ok=True)
        os.makedirs(state, exist_ok=True)
    except OSError as exc:
        raise GradinvError(f"cannot create the sweep directory {out!r}: {exc.strerror}") from None


def _tokens(out: str) -> list[str]:
    try:
        with open(os.path.join(out, STATE, "sessions")) as fh:
            return [line.strip() for line in fh if line.strip()]
    except OSError:
        return []


def cleanup(out: str) -> list[int]:
    """Kill what earlier, crashed runs of the sweep in `out` left behind; returns their PIDs.
    Refused while a driver is running in `out` (its workers carry the same tokens)."""
    if not os.path.isdir(os.path.join(out, STATE)):
        raise GradinvError(f"{out!r} is not a sweep directory (no {STATE}/)")
    lock = procs.SweepLock(os.path.join(out, STATE))
    lock.acquire()
    try:
        return procs.kill_session(_tokens(out))
    finally:
        lock.release()


def _recover(out: str, cells_root: str, sink: Callable[[dict[str, Any]], None]) -> None:
    """Half-written cells are removed (rerun); a complete cell directory whose line the crashed
    driver never wrote is recorded from the record stored inside it (not recomputed)."""
    recorded = read_results(out)
    for name in sorted(os.listdir(cells_root)):
        path = os.path.join(cells_root, name)
        if name.startswith(TMP):
            shutil.rmtree(path, ignore_errors=True)
            continue
        record = stored_record(path)
        if record is None:
            shutil.rmtree(path, ignore_errors=True)
        elif not succeeded(recorded.get(name)):
            sink(record)


def run_sweep(
    grid: Grid,
    out: str,
    engine: str = "local",
    workers: int = 1,
    resume: bool = False,
    threads: int = 1,
    address: str | None = None,
    cell_fn: CellFn = attack_cell,
    check_fn: Callable[[dict[str, Any]], None] | None = check_attack_config,
    progress: bool = True,
    metrics: Sequence[str] = ("psnr", "ssim", "time_s"),
) -> SweepResult:  # metrics=(): no summary.md (experiments write their own reports)
    """Run every cell of `grid` that `out` has no successful record for.

    `cell_fn(config, cell_dir) -> metrics` runs one cell (default: a `gradinv attack` run and its
    report); it must be importable by name (workers unpickle it). `check_fn(config)` validates every
    cell before any runs (None: no check). Failed cells are recorded and retried on resume.
    Ctrl-C kills the running cells, keeps what finished, and re-raises KeyboardInterrupt.
    """
    if engine not in ENGINES:
        raise GradinvError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
    if workers < 1 or threads < 1:
        raise GradinvError(f"workers and threads must be >= 1, got {workers} and {threads}")
    if address and engine != "ray":
        raise GradinvError("--address joins a Ray cluster: use it with --engine ray")
    out = os.path.abspath(out)  # Ray workers do not share the driver's working directory
    grid = _with_threads(grid, threads)
    cells = grid.cells()
    _precheck(cells, check_fn)
    run_engine = _engine(engine)  # before touching DIR: a missing Ray is a one-line error
    if address:
        from .engines.ray import preflight

        preflight(address)  # an unreachable cluster too (Ray itself would retry forever)
    _prepare_dir(out, resume)
    lock = procs.SweepLock(os.path.join(out, STATE))
    lock.acquire()
    token = procs.new_token()
    previous = os.environ.get(procs.MARKER)
    try:
        # the lock is ours, so every earlier driver of DIR is dead: kill its leftovers
        procs.kill_session(_tokens(out))
        with open(os.path.join(out, STATE, "sessions"), "a") as fh:
            fh.write(token + "\n")
        with open(os.path.join(out, "grid.yaml"), "w") as fh:
            yaml.safe_dump(grid.to_dict(), fh, sort_keys=False)
        if engine == "local":
            # multiprocessing's resource tracker lives as long as this process: start it before
            # the token is set, so that killing this sweep's workers never kills it
            from multiprocessing import resource_tracker

            resource_tracker.ensure_running()
        os.environ[procs.MARKER] = token  # inherited by every process the engine starts
        return _drive(cells, out, token, engine, run_engine, workers, threads, address, resume,
                      cell_fn, progress, metrics)  # fmt: skip
    finally:
        if previous is None:
            os.environ.pop(procs.MARKER, None)
        else:
            os.environ[procs.MARKER] = previous
        procs.kill_session([token])  # a clean engine leaves nothing; this covers Ctrl-C/errors
        for name in os.listdir(os.path.join(out, "cells")):
            if name.startswith(TMP):  # cells killed half-way (their workers are dead now)
                shutil.rmtree(os.path.join(out, "cells", name), ignore_errors=True)
        lock.release()


def _engine(engine: str) -> Callable[..., None]:
    if engine == "local":
        from .engines.local import run_local

        return run_local
    if engine == "inline":
        from .engines.inline import run_inline

        return run_inline
    try:
        from .engines.ray import run_ray
    except ImportError as exc:
        if exc.name == "ray":
            raise GradinvError(INSTALL_RAY) from None
        # Ray is there but Tune or one of its dependencies is not (plain `pip install ray`)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GradinvError(f"{INSTALL_RAY} (import failed: {reason})") from None
    return run_ray


def _drive(
    cells: list[Cell], out: str, token: str, engine: str, run_engine: Callable[..., None],
    workers: int, threads: int, address: str | None, resume: bool, cell_fn: CellFn,
    progress: bool, metrics: Sequence[str],
) -> SweepResult:  # fmt: skip
    results_path = os.path.join(out, RESULTS)
    cells_root = os.path.join(out, "cells")
    wanted = {c.id for c in cells}
    latest = read_results(out)
    bar: tqdm | None = None

    def sink(record: dict[str, Any]) -> None:
        cell = record["cell"]
        old = latest.get(cell)
        if succeeded(old) or (old is not None and encode(old) == encode(record)):
            return  # already recorded (an engine may report a cell twice after a restore)
        append_record(results_path, record)
        latest[cell] = record
        if bar is not None and cell in wanted:
            bar.update(1)
            if not succeeded(record):
                first = (str(record["error"]).strip() or "?").splitlines()[0]
                bar.write(f"cell {cell} failed: {first}")

    _recover(out, cells_root, sink)
    todo = [c for c in cells if not succeeded(latest.get(c.id))]
    skipped = len(cells) - len(todo)
    bar = tqdm(total=len(cells), initial=skipped, desc="sweep", unit="cell",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)  # fmt: skip
    job = EngineJob(todo, cells_root, out, cell_fn, workers, threads, sink,
                    kill_workers=lambda: procs.kill_session([token]),
                    resume=resume, address=address)  # fmt: skip
    try:
        if engine == "ray":
            run_engine(job, lambda: {c for c, r in latest.items() if succeeded(r)})
        else:
            run_engine(job)
    finally:
        bar.close()
        records = {c.id: latest[c.id] for c in cells if c.id in latest}
        summary = write_summary(out, cells, records, metrics) if metrics else ""
    failed = [cid for cid, r in records.items() if not succeeded(r)]
    return SweepResult(out, cells, records, summary, skipped, failed)
