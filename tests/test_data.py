import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from gradinv.data import batch_indices, load_dataset, sample_batch
from gradinv.errors import GradinvError


def test_sample_dataset_is_real_deterministic_and_in_range(sample_data):
    assert sample_data.num_classes == 10 and len(sample_data) == 640
    a = sample_data.load([0, 100, 639], 32)
    b = load_dataset("sample").load([0, 100, 639], 32)
    assert a.shape == (3, 3, 32, 32) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    assert a.std() > 0.05  # real photo content, not a constant


@pytest.mark.parametrize("composition, check", [
    ("unique", lambda y: len(set(y)) == len(y)),
    ("same", lambda y: len(set(y)) == 1),
    ("repeat:2", lambda y: all(list(y).count(v) == 2 for v in y)),
    ("random", lambda y: True),
])  # fmt: skip
def test_compositions(sample_data, composition, check):
    x, y = sample_batch(sample_data, 8, composition, seed=3, image_size=16)
    assert x.shape == (8, 3, 16, 16) and check(y.tolist())
    x2, y2 = sample_batch(sample_data, 8, composition, seed=3, image_size=16)
    assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.parametrize("batch_size, composition, message", [
    (11, "unique", "needs 11 classes"),
    (0, "random", "at least 1"),
    (6, "repeat:4", "not divisible"),
    (4, "repeat:x", "K must be an integer"),
    (4, "mixed", "choose from"),
    (65, "same", "with 65 images each"),
])  # fmt: skip
def test_impossible_batches_are_clear_errors(sample_data, batch_size, composition, message):
    with pytest.raises(GradinvError, match=message):
        batch_indices(sample_data, batch_size, composition)


def test_digits_is_grayscale_and_resized():
    d = load_dataset("digits")
    x, y = sample_batch(d, 4, "unique", image_size=32)
    assert d.channels == 1 and x.shape == (4, 1, 32, 32) and x.max() <= 1


def _write_idx(path, array, gz=True):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_fixture(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(20) % 10, gz=False)
    d = load_dataset(f"fashion-mnist:{tmp_path}")
    assert len(d) == 20 and d.classes[0] == "t-shirt"
    x = d.load([3], 28)
    assert x.shape == (1, 1, 28, 28)


def test_fashion_mnist_corrupt_and_truncated(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(20) % 10, gz=False)
    with pytest.raises(GradinvError, match="bad magic"):
        load_dataset(f"fashion-mnist:{tmp_path}")
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 5, 28, 28)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + b"\x00" * 100)
    with pytest.raises(GradinvError, match="truncated"):
        load_dataset(f"fashion-mnist:{tmp_path}")


def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    batch = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": list(rng.integers(0, 10, n)),
    }
    batch[b"labels"] = [int(v) for v in batch[b"labels"]]
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    return batch


def test_cifar10_python_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    b1 = _cifar_batch(root / "data_batch_1", 6, 0)
    _cifar_batch(root / "data_batch_2", 4, 1)
    d = load_dataset(f"cifar10:{tmp_path}")
    assert len(d) == 10 and d.channels == 3
    x = d.load([0], 32)
    expected = torch.from_numpy(b1[b"data"][0].reshape(3, 32, 32)).float() / 255
    assert torch.allclose(x[0], expected, atol=1e-6)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_code_in_pickles(tmp_path):
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, fh)
    with pytest.raises(
        GradinvError, match="untrusted content.*posix.system|untrusted content.*os.system"
    ):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_garbage_file(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x02garbage")
    with pytest.raises(GradinvError):
        load_dataset(f"cifar10:{tmp_path}")


def test_folder_and_flowers17(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "folder" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
                tmp_path / "folder" / cls / f"{i}.png"
            )
    d = load_dataset(f"folder:{tmp_path / 'folder'}")
    assert d.classes == ["cats", "dogs"] and len(d) == 6
    assert d.load([5], 16).shape == (1, 3, 16, 16)

    jpg = tmp_path / "flowers" / "jpg"
    jpg.mkdir(parents=True)
    for i in range(160):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
            jpg / f"image_{i + 1:04d}.jpg"
        )
    f = load_dataset(f"flowers17:{tmp_path / 'flowers'}")
    assert f.num_classes == 2 and f.labels[79] == 0 and f.labels[80] == 1
    assert f.load([100], 8).shape == (1, 3, 8, 8)


def test_unreadable_image_is_clear_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    d = load_dataset(f"folder:{tmp_path}")
    with pytest.raises(GradinvError, match="cannot read image"):
        d.load([0], 8)


@pytest.mark.parametrize(
    "spec", ["imagenet", "cifar10", "folder:/does/not/exist", "flowers17:/nope"]
)
def test_bad_dataset_specs(spec):
    with pytest.raises(GradinvError):
        load_dataset(spec)
