"""Image datasets as the attacks need them: float tensors in [0,1], resized on demand, integer labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..errors import GradinvError


@dataclass
class ImageDataset:
    """A labelled image collection; `load(indices, size)` returns (n, C, size, size) floats in [0,1].

    `loader(i, size)` returns one image as a float32 array (C, size, size); keeping images unloaded
    until needed lets folder datasets with thousands of JPEGs open instantly.
    """

    name: str
    classes: list[str]
    labels: np.ndarray
    channels: int
    loader: Callable[[int, int], np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) == 0:
            raise GradinvError(f"dataset {self.name!r} holds no images")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self, indices: Sequence[int], size: int) -> torch.Tensor:
        if size < 4:
            raise GradinvError(f"image size must be at least 4, got {size}")
        arrays = [self.loader(int(i), size) for i in indices]
        return torch.from_numpy(np.stack(arrays)).float().clamp_(0, 1)

    def channel_stats(self, size: int, max_images: int = 256) -> tuple[list[float], list[float]]:
        """Per-channel mean and std over a fixed subset: the normalisation a client would use."""
        rng = np.random.default_rng(0)
        idx = rng.choice(len(self), size=min(max_images, len(self)), replace=False)
        x = self.load(sorted(idx.tolist()), size)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]


def array_loader(images: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """Loader over an in-memory uint8/float array (N, C, H, W); resizes with antialiasing."""
    scale = 255.0 if images.dtype == np.uint8 else 1.0

    def load(i: int, size: int) -> np.ndarray:
        x = torch.from_numpy(np.asarray(images[i], dtype=np.float32) / scale)[None]
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return x[0].numpy()

    return load


def pil_to_array(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Center-crop to a square, resize, and return (C, size, size) floats in [0,1]."""
    img = img.convert("RGB" if channels == 3 else "L")
    img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def file_loader(paths: Sequence[str], channels: int = 3) -> Callable[[int, int], np.ndarray]:
    """Loader over image files; an unreadable file is a clear error naming it."""

    def load(i: int, size: int) -> np.ndarray:
        try:
            with Image.open(paths[i]) as img:
                return pil_to_array(img, size, channels)
        except (OSError, ValueError) as exc:
            raise GradinvError(f"cannot read image {paths[i]}: {exc}") from None

    return load
