"""Data: datasets as float images in [0,1] with integer labels, and private-batch sampling."""

from __future__ import annotations

import os

from ..errors import GradinvError
from .batch import COMPOSITIONS, batch_indices, sample_batch
from .builtin import load_digits, load_lfw
from .channels import CHANNELS, check_channels
from .dataset import ImageDataset, content_hash
from .files import MAX_PIXELS
from .formats import (
    FASHION_MNIST_DIR,
    load_cifar10,
    load_fashion_mnist,
    load_flowers17,
    load_folder,
)
from .mixture import is_mixture, load_mixture
from .sample import load_sample
from .splits import SPLITS, parse_split, split_dataset, unseen, with_split

DATASETS = {
    "sample": "built-in: crops of 10 real photos bundled with scikit-image/scikit-learn/matplotlib",
    "digits": "scikit-learn's 8x8 handwritten digits (1797 images, 10 classes)",
    "lfw": "scikit-image's LFW subset: 200 gray 25x25 crops, classes face / non-face",
    "fashion-mnist[:DIR]": "IDX files (default DIR: Debian's /usr/share/datasets/fashion-mnist)",
    "cifar10:DIR": "CIFAR-10 python batches (data_batch_N, test_batch), read without unpickling code",
    "folder:DIR": "one subfolder per class holding png/jpg images",
    "flowers17:DIR": "Oxford 17 flowers jpg folder (80 images per class in file order)",
    "SPEC@train, SPEC@test": "official split (fashion-mnist, cifar10) or a fixed 80/20 one (others)",
    "mixture:SPEC+SPEC[*K]": "several datasets as one (classes prefixed); SPEC*K repeats one K times",
}
OFFICIAL_SPLITS = ("fashion-mnist", "cifar10")
BUILTIN = {"sample": load_sample, "digits": load_digits, "lfw": load_lfw}
WITH_DIR = {"cifar10": load_cifar10, "folder": load_folder, "flowers17": load_flowers17}


def _open(name: str, arg: str, split: str) -> ImageDataset:
    """The whole dataset, or the official split's files; `spec` set without a split suffix."""
    if name in BUILTIN and not arg:
        dataset = BUILTIN[name]()
        dataset.spec = name
    elif name == "fashion-mnist":
        dataset = load_fashion_mnist(arg, split)
        default = not arg or os.path.abspath(arg) == FASHION_MNIST_DIR
        dataset.spec = name if default else f"{name}:{os.path.abspath(arg)}"
    elif name in WITH_DIR:
        dataset = load_cifar10(arg, split) if name == "cifar10" else WITH_DIR[name](arg)
        dataset.spec = f"{name}:{os.path.abspath(arg)}"
    else:
        names = ", ".join(k for k in DATASETS if not k.startswith("SPEC"))
        raise GradinvError(f"unknown dataset {name!r}; choose from: {names}")
    return dataset


def load_dataset(spec: str, channels: int | None = None) -> ImageDataset:
    """Open a dataset from a spec such as 'sample', 'digits@test', 'cifar10:/data/cifar@train'.

    A spec without a split is the whole dataset (fashion-mnist and cifar10: their official training
    files, as always). `channels` (1 or 3) converts every image: gray to RGB by repetition, RGB to
    gray by ITU-R 601 luminance.
    """
    if is_mixture(spec):
        return load_mixture(spec, channels, load_dataset)
    base, split = parse_split(spec)
    name, _, arg = base.partition(":")
    if channels is not None:
        channels = check_channels(channels)
    if name in OFFICIAL_SPLITS:
        dataset = _open(name, arg, split or "train")
        if split == "train":
            dataset = dataset.subset(range(len(dataset)), "train", f"{dataset.spec}@train")
        elif split == "test":
            dataset = unseen(dataset, _open(name, arg, "train"))
    else:
        dataset = _open(name, arg, "train")
        if split:
            dataset = split_dataset(dataset, split)
    return dataset if channels is None else dataset.with_channels(channels)


__all__ = [
    "CHANNELS",
    "COMPOSITIONS",
    "DATASETS",
    "MAX_PIXELS",
    "SPLITS",
    "ImageDataset",
    "batch_indices",
    "check_channels",
    "content_hash",
    "load_dataset",
    "parse_split",
    "sample_batch",
    "with_split",
]
