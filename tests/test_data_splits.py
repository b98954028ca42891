"""@train/@test splits, --channels, content hashes and hostile files (gradinv.data)."""

import gzip
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from gradinv.data import load_dataset, parse_split, with_split
from gradinv.data.files import open_image
from gradinv.data.formats import FASHION_MNIST_DIR
from gradinv.errors import GradinvError


def _disjoint(train, test):
    return not set(train.content_hashes()) & set(test.content_hashes())


@pytest.mark.parametrize("spec, expected", [
    ("sample", ("sample", None)),
    ("digits@train", ("digits", "train")),
    ("fashion-mnist:/x/y@test", ("fashion-mnist:/x/y", "test")),
    ("folder:/data/me@home", ("folder:/data/me@home", None)),  # '@' inside a directory name
])  # fmt: skip
def test_parse_split(spec, expected):
    assert parse_split(spec) == expected
    assert with_split(spec, "test") == expected[0] + "@test"


def test_unknown_split_is_clear():
    with pytest.raises(GradinvError, match="unknown split 'val'"):
        load_dataset("digits@val")


@pytest.mark.parametrize("name", ["sample", "digits", "lfw"])
def test_eighty_twenty_split(name):
    whole, train, test = (load_dataset(s) for s in (name, f"{name}@train", f"{name}@test"))
    assert (train.split, test.split, whole.split) == ("train", "test", None)
    assert (train.spec, test.spec, whole.spec) == (f"{name}@train", f"{name}@test", name)
    assert train.name == test.name == name
    assert len(train) + len(test) == len(whole)
    assert 0.18 < len(test) / len(whole) < 0.22
    assert set(np.unique(test.labels)) == set(np.unique(whole.labels))  # stratified
    assert _disjoint(train, test)
    # deterministic, and the split's images are the whole dataset's images
    again = load_dataset(f"{name}@test")
    assert test.content_hashes() == again.content_hashes()
    assert set(train.content_hashes()) | set(test.content_hashes()) == set(whole.content_hashes())
    assert torch.equal(test.load([0, 1], 16), again.load([0, 1], 16))


def test_lfw_is_faces_and_non_faces():
    d = load_dataset("lfw")
    assert len(d) == 200 and d.classes == ["face", "non-face"] and d.channels == 1
    assert list(np.bincount(d.labels)) == [100, 100]
    x = d.load([0, 199], 25)
    assert x.shape == (2, 1, 25, 25) and x.std() > 0.05


def _png(path, array):
    Image.fromarray(array).save(path)


def test_eighty_twenty_keeps_duplicates_out_of_test(tmp_path):
    """Twenty copies of one image and a few distinct ones: every copy lands in @train."""
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for i in range(20):
        _png(tmp_path / "a" / f"{i:02d}.png", same)
    for i in range(10):
        _png(tmp_path / "b" / f"{i:02d}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    train = load_dataset(f"folder:{tmp_path}@train")
    test = load_dataset(f"folder:{tmp_path}@test")
    assert _disjoint(train, test)
    assert len(train) + len(test) == 30 and list(np.bincount(test.labels, minlength=2)) == [0, 2]
    assert test.spec == f"folder:{os.path.abspath(tmp_path)}@test" and test.name == "folder"


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_official_test_split_drops_images_seen_in_train(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (30, 28, 28))
    test = rng.integers(0, 256, (10, 28, 28))
    test[3] = train[7]  # an exact duplicate across the official splits
    for prefix, images in (("train", train), ("t10k", test)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(len(images)) % 10)
    whole = load_dataset(f"fashion-mnist:{tmp_path}")
    tr = load_dataset(f"fashion-mnist:{tmp_path}@train")
    te = load_dataset(f"fashion-mnist:{tmp_path}@test")
    assert len(whole) == len(tr) == 30 and len(te) == 9 and _disjoint(tr, te)
    assert torch.equal(whole.load(range(30), 28), tr.load(range(30), 28))  # same indices
    expected = torch.from_numpy(test[4] / 255).float()
    assert torch.allclose(te.load([3], 28)[0, 0], expected)  # index 3 is now test image 4


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist absent")
def test_fashion_mnist_test_images_are_not_in_train():
    train = load_dataset("fashion-mnist@train")
    test = load_dataset("fashion-mnist@test")
    assert len(train) == 60000 and _disjoint(train, test)
    # measured: the official splits share no exact duplicate, so @test keeps all 10 000
    assert len(test) == 10000 and test.spec == "fashion-mnist@test"


def _cifar(path, data, labels):
    with open(path, "wb") as fh:
        pickle.dump({b"data": data, b"labels": labels}, fh, protocol=2)


def test_cifar10_splits_and_bad_batches(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    _cifar(tmp_path / "data_batch_1", data, [0, 1, 2, 3, 4, 5])
    _cifar(tmp_path / "test_batch", np.concatenate([data[2:3], data[:2] ^ 1]), [2, 0, 1])
    assert len(load_dataset(f"cifar10:{tmp_path}@train")) == 6
    test = load_dataset(f"cifar10:{tmp_path}@test")
    assert len(test) == 2 and list(test.labels) == [0, 1]  # the duplicate of train image 2 left

    bad = {
        "holds 6 images but 5 labels": (data, [0, 1, 2, 3, 4]),
        "flat list of integers": (data, ["cat"] * 6),
        "hold 0 images": (data[:0], []),
    }
    for message, (images, labels) in bad.items():
        _cifar(tmp_path / "data_batch_1", images, labels)
        with pytest.raises(GradinvError, match=message):
            load_dataset(f"cifar10:{tmp_path}@train")


def test_channels_conversion_and_stats(tmp_path):
    rgb = load_dataset("sample")
    gray = load_dataset("sample", channels=1)
    x, g = rgb.load([5], 16), gray.load([5], 16)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert g.shape == (1, 1, 16, 16) and torch.allclose(g[:, 0], luma, atol=1e-6)
    assert gray.channels == 1 and len(gray.channel_stats(16)[0]) == 1
    assert gray.content_hash(5) == rgb.content_hash(5)  # hashes are of the native pixels

    digits3 = load_dataset("digits@test", channels=3)
    y = digits3.load([0], 8)
    assert y.shape == (1, 3, 8, 8) and torch.equal(y[:, 0], y[:, 2])
    mean, std = digits3.channel_stats(8)
    assert len(mean) == 3 and mean[0] == mean[1] == mean[2] and std[0] == std[2]

    (tmp_path / "c").mkdir()
    _png(tmp_path / "c" / "g.png", np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    folder1 = load_dataset(f"folder:{tmp_path}", channels=1)
    folder3 = load_dataset(f"folder:{tmp_path}")
    assert folder1.load([0], 8).shape == (1, 1, 8, 8)
    assert torch.allclose(folder1.load([0], 8)[0, 0], folder3.load([0], 8)[0, 1], atol=1e-6)


@pytest.mark.parametrize("channels", [0, 2, 4, "x", True, 1.5])
def test_invalid_channels(channels):
    with pytest.raises(GradinvError, match="channels must be 1 or 3"):
        load_dataset("digits", channels=channels)


def _bomb_png(path, side):
    """A side x side 1-bit PNG of zeros: a few kB on disk, side**2 pixels once decoded."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (side + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_one_line_error(tmp_path):
    (tmp_path / "a").mkdir()
    bomb = tmp_path / "a" / "bomb.png"
    _bomb_png(bomb, 14000)
    assert bomb.stat().st_size < 100_000
    d = load_dataset(f"folder:{tmp_path}")
    with pytest.raises(GradinvError, match=r"bomb\.png.*limit of 64000000 pixels") as info:
        d.load([0], 8)
    assert "\n" not in str(info.value)
    with pytest.raises(GradinvError, match="limit of 64000000"):
        load_dataset(f"folder:{tmp_path}@test")  # hashing for the split decodes too
    small = tmp_path / "small.png"
    _bomb_png(small, 300)
    with pytest.raises(GradinvError, match=r"300x300 = 90000 pixels, over the limit of 10000"):
        open_image(str(small), max_pixels=10_000)
    assert open_image(str(small)).size == (300, 300)


def test_unreadable_files_are_one_line_errors(tmp_path):
    (tmp_path / "a").mkdir()
    ok = tmp_path / "a" / "ok.png"
    _png(ok, np.zeros((8, 8, 3), dtype=np.uint8))
    (tmp_path / "a" / "truncated.png").write_bytes(ok.read_bytes()[:40])
    (tmp_path / "a" / "dir.png").mkdir()  # not a file at all
    d = load_dataset(f"folder:{tmp_path}")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["dir.png", "ok.png", "truncated.png"]
    for i, name in enumerate(names):
        if name == "ok.png":
            assert d.load([i], 8).shape == (1, 3, 8, 8)
            continue
        with pytest.raises(GradinvError, match=f"cannot read image .*{name}") as info:
            d.load([i], 8)
        assert "\n" not in str(info.value)
