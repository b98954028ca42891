import functools

import pytest
import torch

from gradinv.data import load_dataset

# Tests use small models, for which one thread is as fast as two and immune to oversubscription
# when the machine is busy (2-thread torch on a loaded 2-core machine is ~100x slower on tiny ops).
torch.set_num_threads(1)


@functools.cache
def _sample():
    return load_dataset("sample")


@pytest.fixture(scope="session")
def sample_data():
    """The built-in real-photo dataset (loaded once per session)."""
    return _sample()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def ctrl_c_at(monkeypatch):
    """Simulate Ctrl-C right after the optimisation step `iteration` has been recorded."""
    from gradinv.attacks.optimization import _Context

    def arm(iteration: int) -> None:
        original = _Context.record

        def record(self, trial, it, loss):
            original(self, trial, it, loss)
            if it == iteration:
                raise KeyboardInterrupt

        monkeypatch.setattr(_Context, "record", record)

    return arm
