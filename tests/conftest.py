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
    """Simulate Ctrl-C right after optimisation step `iteration` has been recorded (the next
    optimiser step raises KeyboardInterrupt)."""
    from gradinv.attacks.engine import optimisers

    def arm(iteration: int) -> None:
        calls = {"n": 0}
        for cls in (optimisers.Adam, optimisers.LBFGS):
            original = cls.step

            def step(self, closure, lr_factor=1.0, _original=original):
                calls["n"] += 1
                if calls["n"] > iteration + 1:
                    raise KeyboardInterrupt
                return _original(self, closure, lr_factor)

            monkeypatch.setattr(cls, "step", step)

    return arm
