"""What runs in a worker: one cell into its own directory, atomically.

A cell function is `cell_fn(config: dict, out: str) -> dict`: it writes whatever files it likes
into `out` and returns a JSON-able metrics dict. `execute_cell` gives it a scratch directory
`cells/.tmp-<ID>` and renames that to `cells/<ID>` only once the function has returned and the
record is stored beside its files, so a complete-looking cell directory is always complete, and a
rerun of an already finished cell returns the stored record instead of recomputing it.
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import GradinvError, Interrupted
from .results import encode

CellFn = Callable[[dict[str, Any], str], dict[str, Any]]
RECORD = "sweep_record.json"  # the cell's results.jsonl line, stored inside its directory
TMP = ".tmp-"


def attack_cell(config: dict[str, Any], out: str) -> dict[str, Any]:
    """The default cell: one `gradinv attack` run and its report directory."""
    from ..pipeline import RunConfig, run
    from ..report import write_report

    result = run(RunConfig(**config), progress=False)
    if result.metrics["info"].get("interrupted"):
        # the attack caught Ctrl-C and kept its best iterate: not this config's result
        raise KeyboardInterrupt
    write_report(out, result)
    return result.metrics


def check_attack_config(config: dict[str, Any]) -> None:
    """Cheap static check of an attack cell (every setting, attack options, defense specs), the
    checks `gradinv attack` makes before its work, for every cell before any cell runs."""
    from ..attacks import make_attack
    from ..pipeline import RunConfig, attack_kwargs, check, make_defenses

    try:
        run_config = RunConfig(**config)
    except TypeError as exc:
        raise GradinvError(f"bad settings: {exc}") from None
    check(run_config)
    make_attack(run_config.attack, progress=False, **attack_kwargs(run_config))
    make_defenses(run_config)


def set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _store(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stored_record(cell_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(cell_dir, RECORD)) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None


def execute_cell(
    cell_fn: CellFn, cell_id: str, config: dict[str, Any], cells_root: str
) -> dict[str, Any]:
    """Run one cell; returns its record. A GradinvError (or any other exception) becomes an
    error record, so one bad cell never stops the sweep; KeyboardInterrupt propagates."""
    final = os.path.join(cells_root, cell_id)
    done = stored_record(final)
    if done is not None:
        return done
    tmp = os.path.join(cells_root, TMP + cell_id)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        metrics = cell_fn(config, tmp)
        if not isinstance(metrics, dict):
            raise GradinvError(f"cell function returned {type(metrics).__name__}, not a dict")
        record: dict[str, Any] = {"cell": cell_id, "config": config, "metrics": metrics}
        text = encode(record)  # fails here, not in the driver, if the metrics are not JSON
    except Interrupted:  # a cell function that saved partial work on Ctrl-C: still no result
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except GradinvError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"cell": cell_id, "config": config, "error": str(exc)}
    except Exception as exc:  # a bug or a crash in a library: recorded, with where it happened
        shutil.rmtree(tmp, ignore_errors=True)
        return {
            "cell": cell_id,
            "config": config,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _store(os.path.join(tmp, RECORD), text)
    shutil.rmtree(final, ignore_errors=True)  # a directory without a record is not a result
    os.rename(tmp, final)
    _fsync_dir(cells_root)
    return record
