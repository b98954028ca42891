"""Image datasets as the attacks need them: float tensors in [0,1], resized on demand, integer labels."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GradinvError
from .channels import check_channels, convert_channels


def content_hash(pixels: np.ndarray) -> str:
    """sha256 of an image's native pixels (dtype and shape included): equal hashes, equal images."""
    pixels = np.ascontiguousarray(pixels)
    header = f"{pixels.dtype.str}{pixels.shape}".encode()
    return hashlib.sha256(header + pixels.tobytes()).hexdigest()


@dataclass
class ImageDataset:
    """A labelled image collection; `load(indices, size)` returns (n, C, size, size) floats in [0,1].

    `loader(i, size)` returns one image as a float32 array (C, size, size); keeping images unloaded
    until needed lets folder datasets with thousands of JPEGs open instantly. `pixels(i)` returns
    the image's native pixels (before resizing and channel conversion), from which `content_hash`
    is computed. `spec` reopens the same images with `load_dataset(spec)`; `split` is 'train',
    'test' or None (the whole dataset).
    """

    name: str
    classes: list[str]
    labels: np.ndarray
    channels: int
    loader: Callable[[int, int], np.ndarray] = field(repr=False)
    pixels: Callable[[int], np.ndarray] | None = field(default=None, repr=False)
    split: str | None = None
    spec: str = ""
    _hashes: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.spec = self.spec or self.name
        if len(self.labels) == 0:
            raise GradinvError(f"dataset {self.spec!r} holds no images")

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

    def content_hash(self, i: int) -> str:
        """sha256 of image i's native pixels; independent of resizing and `--channels`."""
        if self.pixels is None:
            raise GradinvError(f"dataset {self.spec!r} cannot hash its images")
        if i not in self._hashes:
            self._hashes[i] = content_hash(self.pixels(int(i)))
        return self._hashes[i]

    def content_hashes(self, indices: Sequence[int] | None = None) -> list[str]:
        indices = range(len(self)) if indices is None else indices
        return [self.content_hash(int(i)) for i in indices]

    def subset(self, indices: Sequence[int], split: str | None, spec: str) -> ImageDataset:
        """The images `indices` (in that order) as a dataset of their own."""
        idx = np.asarray(indices, dtype=np.int64)
        loader, pixels = self.loader, self.pixels
        known = {j: self._hashes[int(i)] for j, i in enumerate(idx) if int(i) in self._hashes}
        return dataclasses.replace(
            self,
            labels=self.labels[idx],
            loader=lambda i, size: loader(int(idx[i]), size),
            pixels=None if pixels is None else (lambda i: pixels(int(idx[i]))),
            split=split,
            spec=spec,
            _hashes=known,
        )

    def with_channels(self, channels: int) -> ImageDataset:
        """The same images with `channels` channels: gray -> RGB repeats the plane, RGB -> gray is
        ITU-R 601 luminance. Statistics (`channel_stats`) follow, being computed from `load`."""
        channels = check_channels(channels)
        if channels == self.channels:
            return self
        loader, native = self.loader, self.channels
        return dataclasses.replace(
            self,
            channels=channels,
            loader=lambda i, size: convert_channels(loader(i, size), native, channels),
            _hashes=self._hashes,
        )


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


def array_pixels(images: np.ndarray) -> Callable[[int], np.ndarray]:
    """Native pixels of an in-memory array dataset."""
    return lambda i: images[i]
