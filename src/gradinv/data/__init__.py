"""Data: datasets as float images in [0,1] with integer labels, and private-batch sampling."""

from __future__ import annotations

from ..errors import GradinvError
from .batch import COMPOSITIONS, batch_indices, sample_batch
from .dataset import ImageDataset
from .formats import (
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_flowers17,
    load_folder,
)
from .sample import load_sample

DATASETS = {
    "sample": "built-in: crops of 10 real photos bundled with scikit-image/scikit-learn/matplotlib",
    "digits": "scikit-learn's 8x8 handwritten digits (1797 images, 10 classes)",
    "fashion-mnist[:DIR]": "IDX files (default DIR: Debian's /usr/share/datasets/fashion-mnist)",
    "cifar10:DIR": "CIFAR-10 python batches (data_batch_N, test_batch), read without unpickling code",
    "folder:DIR": "one subfolder per class holding png/jpg images",
    "flowers17:DIR": "Oxford 17 flowers jpg folder (80 images per class in file order)",
}


def load_dataset(spec: str) -> ImageDataset:
    """Open a dataset from a spec such as 'sample', 'digits', 'cifar10:/data/cifar'."""
    name, _, arg = spec.partition(":")
    if name == "sample" and not arg:
        return load_sample()
    if name == "digits" and not arg:
        return load_digits()
    if name == "fashion-mnist":
        return load_fashion_mnist(arg)
    if name == "cifar10":
        return load_cifar10(arg)
    if name == "folder":
        return load_folder(arg)
    if name == "flowers17":
        return load_flowers17(arg)
    raise GradinvError(f"unknown dataset {spec!r}; choose from: {', '.join(DATASETS)}")


__all__ = [
    "COMPOSITIONS",
    "DATASETS",
    "ImageDataset",
    "batch_indices",
    "load_dataset",
    "sample_batch",
]
