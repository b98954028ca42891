"""Readers for standard on-disk formats. Files are untrusted: nothing here unpickles arbitrary objects."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct

import numpy as np

from ..errors import GradinvError
from .dataset import ImageDataset, array_loader, array_pixels
from .files import file_loader, file_pixels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = [
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def _require_dir(path: str, what: str) -> None:
    if not path:
        raise GradinvError(f"{what} needs a directory: use '{what}:DIR'")
    if not os.path.isdir(path):
        raise GradinvError(f"{what}: directory not found: {path}")


# --- IDX (MNIST / Fashion-MNIST) ---------------------------------------------------------------


def read_idx(path: str) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into a uint8 array, validating its header."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise GradinvError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise GradinvError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    if ndim not in (1, 3) or len(data) < 4 + 4 * ndim:
        raise GradinvError(f"{path}: IDX file with {ndim} dimensions; expected 1 (labels) or 3")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise GradinvError(
            f"{path}: IDX header says {shape} but holds {body.size} bytes (truncated?)"
        )
    return body.reshape(shape)


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise GradinvError(f"fashion-mnist: {stem}[.gz] not found in {directory}")


def load_fashion_mnist(directory: str = "", split: str = "train") -> ImageDataset:
    directory = directory or FASHION_MNIST_DIR
    if not directory or not os.path.isdir(directory):
        raise GradinvError(
            f"fashion-mnist: directory not found: {directory} "
            "(install Debian's dataset-fashion-mnist or pass fashion-mnist:DIR)"
        )
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise GradinvError(
            f"fashion-mnist: images {images.shape} and labels {labels.shape} disagree"
        )
    if labels.max(initial=0) >= len(FASHION_CLASSES):
        raise GradinvError(f"fashion-mnist: label {labels.max()} out of range 0..9")
    images = images[:, None]
    return ImageDataset(
        "fashion-mnist", FASHION_CLASSES, labels, 1, array_loader(images), array_pixels(images)
    )


# --- CIFAR-10 python batches ---------------------------------------------------------------------


class _SafeUnpickler(pickle.Unpickler):
    """Builds only plain containers and numpy arrays; any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("__builtin__", "bytes"),  # protocol 2 writes an empty array's buffer as bytes()
        ("builtins", "bytes"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def safe_unpickle(path: str) -> object:
    try:
        with open(path, "rb") as fh:
            return _SafeUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise GradinvError(f"{path}: untrusted content in pickle ({exc})") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise GradinvError(f"{path}: not a readable CIFAR batch ({exc})") from None


def _field(batch: dict, key: str) -> object:
    value = batch.get(key.encode(), batch.get(key))
    if value is None:
        raise GradinvError(f"CIFAR batch lacks the field {key!r}")
    return value


def load_cifar10(directory: str, split: str = "train") -> ImageDataset:
    if os.path.isdir(os.path.join(directory, "cifar-10-batches-py")):
        directory = os.path.join(directory, "cifar-10-batches-py")
    _require_dir(directory, "cifar10")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    names = [n for n in names if os.path.exists(os.path.join(directory, n))]
    if not names:
        raise GradinvError(f"cifar10: no data_batch_N or test_batch files in {directory}")
    images, labels = [], []
    for name in names:
        data, batch_labels = _cifar_batch(os.path.join(directory, name), name)
        images.append(data)
        labels.append(batch_labels)
    data, labels_arr = np.concatenate(images), np.concatenate(labels)
    if len(labels_arr) == 0:
        raise GradinvError(f"cifar10: the {split} batches in {directory} hold 0 images")
    if labels_arr.min() < 0 or labels_arr.max() > 9:
        raise GradinvError("cifar10: labels outside 0..9")
    return ImageDataset(
        "cifar10", CIFAR10_CLASSES, labels_arr, 3, array_loader(data), array_pixels(data)
    )


def _cifar_batch(path: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (N, 3, 32, 32) uint8 images and (N,) int64 labels, validated."""
    batch = safe_unpickle(path)
    if not isinstance(batch, dict):
        raise GradinvError(f"cifar10: {name} does not hold a dict")
    data = np.asarray(_field(batch, "data"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise GradinvError(f"cifar10: {name} data has shape {data.shape}; expected (N, 3072) uint8")
    raw = _field(batch, "labels")
    try:
        labels = np.asarray(raw)
    except (ValueError, TypeError):
        raise GradinvError(f"cifar10: {name} labels are not a flat list of integers") from None
    if labels.ndim != 1 or (len(labels) and not np.issubdtype(labels.dtype, np.integer)):
        raise GradinvError(
            f"cifar10: {name} labels must be a flat list of integers, got {labels.dtype} "
            f"with shape {labels.shape}"
        )
    if len(labels) != len(data):
        raise GradinvError(f"cifar10: {name} holds {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


# --- image folders -------------------------------------------------------------------------------


def _images_in(directory: str) -> list[str]:
    return sorted(
        os.path.join(directory, f)
        for f in os.listdir(directory)
        if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
    )


def load_folder(directory: str) -> ImageDataset:
    """Class-per-subfolder layout: DIR/<class>/<image>."""
    _require_dir(directory, "folder")
    classes = sorted(
        d
        for d in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, d)) and d[0] != "."
    )
    paths, labels = [], []
    for c, cls in enumerate(classes):
        files = _images_in(os.path.join(directory, cls))
        paths += files
        labels += [c] * len(files)
    if not paths:
        raise GradinvError(f"folder: no images in class subfolders of {directory}")
    return ImageDataset(
        "folder", classes, np.array(labels), 3, file_loader(paths), file_pixels(paths)
    )


def load_flowers17(directory: str) -> ImageDataset:
    """Oxford 17 flowers: image_0001.jpg ... image_1360.jpg, 80 consecutive images per class."""
    if os.path.isdir(os.path.join(directory, "jpg")):
        directory = os.path.join(directory, "jpg")
    _require_dir(directory, "flowers17")
    paths = [p for p in _images_in(directory) if os.path.basename(p).startswith("image_")]
    if not paths or len(paths) % 80:
        raise GradinvError(
            f"flowers17: expected a multiple of 80 image_XXXX.jpg files in {directory}, found {len(paths)}"
        )
    labels = np.arange(len(paths)) // 80
    classes = [f"flower{c:02d}" for c in range(len(paths) // 80)]
    return ImageDataset("flowers17", classes, labels, 3, file_loader(paths), file_pixels(paths))
