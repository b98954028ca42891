"""Small real datasets shipped inside installed packages (scikit-learn, scikit-image): offline."""

from __future__ import annotations

import numpy as np

from .dataset import ImageDataset, array_loader, array_pixels

LFW_CLASSES = ["face", "non-face"]


def load_digits() -> ImageDataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    native = bunch.images.astype(np.uint8)[:, None]  # values 0..16
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    return ImageDataset(
        "digits",
        [str(d) for d in range(10)],
        bunch.target,
        1,
        array_loader(images),
        array_pixels(native),
    )


def load_lfw() -> ImageDataset:
    """scikit-image's LFW subset: 200 gray 25x25 crops, the first 100 faces, then 100 non-faces
    (background crops of the same photos). Shipped with scikit-image; nothing is downloaded."""
    from skimage.data import lfw_subset

    images = np.asarray(lfw_subset(), dtype=np.float32)[:, None]  # floats in [0, 1]
    labels = np.repeat([0, 1], len(images) // 2)
    return ImageDataset(
        "lfw", list(LFW_CLASSES), labels, 1, array_loader(images), array_pixels(images)
    )
