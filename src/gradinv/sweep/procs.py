"""The processes a sweep starts, found again after a crash.

The driver puts a per-run token into its environment before it starts any worker (a process pool,
or a local Ray instance: gcs_server, raylet, the agents and every Ray worker inherit it). After a
SIGKILL of the driver, Ray's DashboardAgent and RuntimeEnvAgent outlive it and ignore SIGTERM
(measured, Ray 2.60); `--resume` finds every live process whose environment carries a token of an
earlier run of the same sweep directory and SIGKILLs it. Nothing else matches: the token is random
and only processes started under that driver inherit it. Processes of a cluster joined with
--address are not started by the driver, so they are never touched. Linux (/proc) only.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
from typing import IO

from ..errors import GradinvError

MARKER = "GRADINV_SWEEP_SESSION"


def new_token() -> str:
    return secrets.token_hex(8)


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:  # gone, a zombie, or not ours
        return b""


def session_pids(tokens: list[str] | set[str]) -> list[int]:
    """Live processes started under any of these tokens (never this process)."""
    if not tokens or not os.path.isdir("/proc"):
        return []
    wanted = {f"{MARKER}={t}".encode() for t in tokens}
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        if wanted.intersection(_environ(int(name)).split(b"\0")):
            out.append(int(name))
    return sorted(out)


def kill_session(tokens: list[str] | set[str]) -> list[int]:
    """SIGKILL every process of these sessions (Ray's agents ignore SIGTERM); returns the PIDs."""
    pids = session_pids(tokens)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids


class SweepLock:
    """An exclusive flock on DIR/.sweep/lock for the driver's lifetime: the kernel drops it when the
    driver dies, even by SIGKILL, so a held lock means a live sweep is using the directory."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "lock")
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        fh = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise GradinvError(
                f"{os.path.dirname(os.path.dirname(self.path))!r} is in use by another running "
                f"sweep (pid {pid}); wait for it or stop it first"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
