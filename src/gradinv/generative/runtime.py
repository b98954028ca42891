"""Process-level concerns of a long training run: torch threads and a Ctrl-C that waits for the
end of the current step."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run with n intra-op threads (0: leave torch's default); yields the count in effect."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[dict[str, bool]]:
    """Ctrl-C sets flag["stop"], checked between steps, so a checkpoint never holds half a step
    (the discriminator updated, the generator not). A second Ctrl-C interrupts at once. Outside
    the main thread (no signal handlers there) the flag simply stays False."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
