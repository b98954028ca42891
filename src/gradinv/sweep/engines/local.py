"""The local engine: a `spawn` process pool on this machine (the default).

Workers ignore SIGINT (Ctrl-C is the driver's to handle: it kills them, and a cell interrupted
half-way is simply not recorded) and exit on their own when the driver dies, so a SIGKILLed
driver leaves no busy orphans behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ...errors import GradinvError
from ..cells import execute_cell, set_threads
from . import EngineJob


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)  # the driver is gone: nobody will read this cell's result
        time.sleep(0.5)


def _init_worker(threads: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    set_threads(threads)


def run_local(job: EngineJob) -> None:
    if not job.cells:
        return
    pool = ProcessPoolExecutor(
        max_workers=min(job.workers, len(job.cells)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(job.threads, os.getpid()),
    )
    pending: set[Future] = set()
    queue = list(reversed(job.cells))
    clean = False
    try:
        # submit a few cells ahead of the workers, not thousands at once: cheap to cancel
        while queue or pending:
            while queue and len(pending) < 2 * job.workers:
                cell = queue.pop()
                pending.add(
                    pool.submit(execute_cell, job.cell_fn, cell.id, cell.config, job.cells_root)
                )
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job.sink(future.result())
        clean = True
    except BrokenProcessPool:
        raise GradinvError(
            "a worker process died (killed, or out of memory?); finished cells are kept: "
            "rerun with --resume"
        ) from None
    finally:
        if not clean:  # Ctrl-C or an error: running cells are abandoned, not waited for
            job.kill_workers()
        pool.shutdown(wait=True, cancel_futures=True)
