"""samples.png: a grid of generated images, to judge a generator at a glance."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def save_grid(images: torch.Tensor, path: str, scale: int = 2, pad: int = 2) -> None:
    """images (N, C, H, W) in [-1, 1] -> a near-square grid PNG, upscaled (nearest) by `scale`."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        canvas[top : top + h, left : left + w] = x[i].permute(1, 2, 0).numpy()
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(path)
