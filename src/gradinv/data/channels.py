"""`--channels 1|3`: make any dataset gray or colour so one model or generator fits all data."""

from __future__ import annotations

import numpy as np

from ..errors import GradinvError

CHANNELS = (1, 3)
# ITU-R BT.601 luma weights: what PIL's convert("L") uses, so folder images and arrays agree.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def check_channels(channels: object) -> int:
    """The channel count as an int, or a GradinvError naming the valid values."""
    if isinstance(channels, str) and channels.strip().isdigit():
        channels = int(channels)
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)):
        raise GradinvError(f"channels must be 1 or 3, got {channels!r}")
    if int(channels) not in CHANNELS:
        raise GradinvError(f"channels must be 1 or 3, got {channels}")
    return int(channels)


def convert_channels(image: np.ndarray, native: int, channels: int) -> np.ndarray:
    """(native, H, W) floats -> (channels, H, W): gray repeats to RGB, RGB averages to luminance."""
    if native == channels:
        return image
    if native == 1 and channels == 3:
        return np.repeat(image, 3, axis=0)
    if native == 3 and channels == 1:
        return np.tensordot(LUMA, image, axes=1)[None].astype(np.float32)
    raise GradinvError(f"cannot convert {native}-channel images to {channels} channels")
