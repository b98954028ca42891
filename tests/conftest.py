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
