"""Image files are untrusted input: every failure to read one, including a decompression bomb, is a
one-line GradinvError naming the file."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from ..errors import GradinvError

# 64 megapixels (e.g. 8000x8000): far above any photo an attack resizes to 32x32, far below what
# exhausts memory. PIL's own guard (89 Mpx warning, 179 Mpx error) is global state; ours is local.
MAX_PIXELS = 64_000_000


def open_image(path: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and decode an image file, refusing images over `max_pixels` before decoding them."""
    try:
        with warnings.catch_warnings():
            # PIL warns (and past twice its own limit raises) while reading the header only.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise GradinvError(
                        f"image {path} has {width}x{height} = {width * height} pixels, over the "
                        f"limit of {max_pixels} (decompression bomb?)"
                    )
                img.load()
                return img.copy()
    except GradinvError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise GradinvError(
            f"image {path} is over the limit of {max_pixels} pixels (decompression bomb?): {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - untrusted files fail in many ways (OSError, SyntaxError, ...)
        raise GradinvError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


def pil_to_array(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """Center-crop to a square, resize, and return (C, size, size) floats in [0,1]."""
    img = img.convert("RGB" if channels == 3 else "L")
    img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def native_pixels(img: Image.Image) -> np.ndarray:
    """The image's pixels at native resolution: gray modes as (H, W), colour modes as (H, W, 3)."""
    gray = img.mode in ("1", "L", "I", "I;16", "F")
    return np.asarray(img.convert("L" if gray else "RGB"))


def file_loader(paths: Sequence[str], channels: int = 3) -> Callable[[int, int], np.ndarray]:
    """Loader over image files; an unreadable file is a clear error naming it."""

    def load(i: int, size: int) -> np.ndarray:
        return pil_to_array(open_image(paths[i]), size, channels)

    return load


def file_pixels(paths: Sequence[str]) -> Callable[[int], np.ndarray]:
    """Native pixels of each file, for content hashes."""
    return lambda i: native_pixels(open_image(paths[i]))
