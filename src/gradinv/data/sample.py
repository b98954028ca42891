"""The built-in `sample` dataset: random crops of real photos shipped with scikit-image, scikit-learn
and matplotlib, so everything runs offline. The class of a crop is the photo it comes from."""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image

from .dataset import ImageDataset
from .files import pil_to_array

CROPS_PER_PHOTO = 64
_CROP_HASHES: dict[int, str] = {}


def _skimage(name: str) -> str:
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


def _sklearn(name: str) -> str:
    import sklearn.datasets

    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", name)


def _matplotlib(name: str) -> str:
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data(name, asfileobj=False))


PHOTOS = {
    "astronaut": lambda: _skimage("astronaut.png"),
    "cat": lambda: _skimage("chelsea.png"),
    "coffee": lambda: _skimage("coffee.png"),
    "rocket": lambda: _skimage("rocket.jpg"),
    "motorcycle": lambda: _skimage("motorcycle_left.png"),
    "retina": lambda: _skimage("retina.jpg"),
    "hubble": lambda: _skimage("hubble_deep_field.jpg"),
    "china": lambda: _sklearn("china.jpg"),
    "flower": lambda: _sklearn("flower.jpg"),
    "grace_hopper": lambda: _matplotlib("grace_hopper.jpg"),
}


@functools.cache
def _photo(name: str) -> Image.Image:
    with Image.open(PHOTOS[name]()) as img:
        return img.convert("RGB")


def _crop_boxes(seed: int = 1234) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Fixed square crop boxes (left, top, right, bottom), a quarter to half of the short side."""
    rng = np.random.default_rng(seed)
    boxes = []
    for name in PHOTOS:
        w, h = _photo(name).size
        for _ in range(CROPS_PER_PHOTO):
            side = int(rng.uniform(0.25, 0.5) * min(w, h))
            left = int(rng.integers(0, w - side + 1))
            top = int(rng.integers(0, h - side + 1))
            boxes.append((name, (left, top, left + side, top + side)))
    return boxes


def load_sample() -> ImageDataset:
    boxes = _crop_boxes()
    classes = list(PHOTOS)

    def load(i: int, size: int) -> np.ndarray:
        name, box = boxes[i]
        return pil_to_array(_photo(name).crop(box), size, 3)

    def pixels(i: int) -> np.ndarray:
        name, box = boxes[i]
        return np.asarray(_photo(name).crop(box))

    labels = [classes.index(name) for name, _ in boxes]
    # The crops never change: their content hashes are computed once per process.
    return ImageDataset("sample", classes, np.array(labels), 3, load, pixels, _hashes=_CROP_HASHES)
