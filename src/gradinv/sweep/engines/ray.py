"""The Ray engine: one Ray Tune trial per cell, on a local Ray instance or a cluster (--address).

Imported only when `--engine ray` is chosen (Ray takes seconds to import). The Tune experiment
lives in DIR/ray/run-<k>; `--resume` restores the latest one with `Tuner.restore` (trials that
finished are not rerun, unfinished and errored ones are), then runs a fresh experiment for any cell
that still has no successful record (failed cells, cells added to the grid). Trials report their
record as a JSON string; a Tune callback in the driver hands it to the sink, so results.jsonl is
written by the driver only, as cells finish.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import ray
from ray import tune

from ...errors import GradinvError
from ..cells import execute_cell, set_threads
from . import EngineJob

_sink: Callable[[dict[str, Any]], None] | None = None  # the running driver's; see _Recorder


class _Recorder(tune.Callback):
    """Tune pickles its callbacks into the experiment (and restores them from there), so this
    holds no state: it forwards to whichever driver is running now."""

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
        if _sink is not None and "record" in result:
            _sink(json.loads(result["record"]))


def _trial(params: dict[str, Any], cell_fn, cells_root: str, threads: int, cwd: str) -> None:  # noqa: ANN001
    set_threads(threads)
    if os.path.isdir(cwd):  # relative paths in a config (data=folder:...) mean the driver's
        os.chdir(cwd)
    cell = params["cell"]
    record = execute_cell(cell_fn, cell["id"], cell["config"], cells_root)
    tune.report({"record": json.dumps(record)})


def _trial_dirname(trial) -> str:  # noqa: ANN001 - a Tune Trial
    return trial.config["cell"]["id"]


def _experiments(storage: str) -> list[str]:
    if not os.path.isdir(storage):
        return []
    runs = [d for d in os.listdir(storage) if d.startswith("run-") and d[4:].isdigit()]
    return [os.path.join(storage, d) for d in sorted(runs, key=lambda d: int(d[4:]))]


def _restorable(path: str) -> bool:
    # tuner.pkl is written at once, the experiment state only after the first controller step:
    # a driver killed in between leaves an experiment Tuner.restore cannot resume (ValueError)
    return tune.Tuner.can_restore(path) and bool(
        glob.glob(os.path.join(path, "experiment_state-*"))
    )


def preflight(address: str | None, timeout: float = 10.0) -> None:
    """Ray retries an unreachable cluster forever; a plain HOST:PORT is checked first."""
    host, sep, port = (address or "").rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "ray://..." and friends: Ray's own resolution
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise GradinvError(
            f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); "
            "is `ray start --head` running there?"
        ) from None


def _start(job: EngineJob) -> None:
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if job.address:
        try:
            ray.init(address=job.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if "RAY_AUTH_MODE" not in os.environ:  # the usual cause with Ray 2.60's clusters
                reason += (
                    " (clusters started by `ray start` use token authentication: "
                    "export RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token)"
                )
            raise GradinvError(
                f"cannot join the Ray cluster at {job.address!r}: {reason}"
            ) from None
    else:
        # "local": a private instance even if another Ray runs on this machine (ray.init() alone
        # would join it, and its processes are not ours to clean up)
        cpus = job.workers * job.threads
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)


def _collect(results, job: EngineJob) -> None:  # noqa: ANN001 - a ResultGrid
    """Records of trials whose callback the driver missed (killed between trial end and line),
    and trials Ray itself failed (a worker died): those become error records."""
    for result in results:
        cell = (result.config or {}).get("cell")
        if cell is None:
            continue
        if result.metrics and "record" in result.metrics:
            job.sink(json.loads(result.metrics["record"]))
        elif result.error is not None:
            message = str(result.error).strip().splitlines()
            job.sink(
                {"cell": cell["id"], "config": cell["config"],
                 "error": f"ray trial failed: {message[-1] if message else 'unknown'}"}
            )  # fmt: skip


def run_ray(job: EngineJob, done: Callable[[], set[str]]) -> None:
    """`done()` gives the IDs that have a successful record now (it changes as cells finish)."""
    global _sink
    if not job.cells:
        return
    # Ctrl-C: a plain KeyboardInterrupt in the driver (Tune's own handler would keep waiting)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no experiment banner with verbose=0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline by default
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # a cell runs where the local engine would run it
    storage = os.path.abspath(os.path.join(job.out, "ray"))
    trainable = tune.with_resources(
        tune.with_parameters(_trial, cell_fn=job.cell_fn, cells_root=job.cells_root,
                             threads=job.threads, cwd=os.getcwd()),
        {"cpu": job.threads},
    )  # fmt: skip
    _start(job)
    _sink = job.sink
    try:
        runs = _experiments(storage)
        if job.resume and runs and _restorable(runs[-1]):
            tuner = tune.Tuner.restore(
                runs[-1], trainable, resume_unfinished=True, resume_errored=True
            )
            _collect(tuner.fit(), job)
        todo = [c for c in job.cells if c.id not in done()]
        if not todo:
            return
        tuner = tune.Tuner(
            trainable,
            param_space={
                "cell": tune.grid_search([{"id": c.id, "config": c.config} for c in todo])
            },
            tune_config=tune.TuneConfig(
                max_concurrent_trials=job.workers,
                reuse_actors=True,  # one worker process per slot, not one per cell
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=f"run-{len(runs)}",
                storage_path=storage,
                callbacks=[_Recorder()],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=0,
            ),
        )
        _collect(tuner.fit(), job)
    finally:
        _sink = None
        ray.shutdown()
