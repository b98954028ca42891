"""Figures: matplotlib for annotated plots, Pillow for the animation (fast, no GUI)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

MAX_COLUMNS = 16


def _hwc(img: torch.Tensor) -> np.ndarray:
    arr = img.detach().cpu().clamp(0, 1).numpy().transpose(1, 2, 0)
    return arr[..., 0] if arr.shape[2] == 1 else arr


def save_reconstruction_png(
    path: str,
    truth: torch.Tensor,
    recon: torch.Tensor,
    psnrs: Sequence[float],
    title: str = "",
) -> None:
    """Ground truth above reconstruction (matched order), PSNR under each reconstruction."""
    b = truth.shape[0]
    cols = min(b, MAX_COLUMNS)
    blocks = (b + cols - 1) // cols
    fig, axes = plt.subplots(
        2 * blocks, cols, figsize=(max(3.6, 1.3 * cols + 0.6), 2.9 * blocks + 0.5), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    gray = truth.shape[1] == 1
    for i in range(b):
        r, c = 2 * (i // cols), i % cols
        axes[r, c].imshow(_hwc(truth[i]), cmap="gray" if gray else None, vmin=0, vmax=1)
        axes[r + 1, c].imshow(_hwc(recon[i]), cmap="gray" if gray else None, vmin=0, vmax=1)
        axes[r + 1, c].set_title(f"{psnrs[i]:.1f} dB", fontsize=8, y=-0.22)
    axes[0, 0].text(
        -0.1,
        0.5,
        "truth",
        transform=axes[0, 0].transAxes,
        rotation=90,
        va="center",
        ha="right",
        fontsize=8,
    )
    axes[1, 0].text(
        -0.1,
        0.5,
        "attack",
        transform=axes[1, 0].transAxes,
        rotation=90,
        va="center",
        ha="right",
        fontsize=8,
    )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid_image(
    images: torch.Tensor, scale: int = 2, columns: int = MAX_COLUMNS, pad: int = 2
) -> Image.Image:
    """A batch (B, C, H, W) in [0,1] as one RGB picture, each image upscaled by `scale`."""
    b, c, h, w = images.shape
    cols = min(b, columns)
    rows = (b + cols - 1) // cols
    x = images.detach().cpu().clamp(0, 1)
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    canvas = (
        np.ones((rows * (h * scale + pad) + pad, cols * (w * scale + pad) + pad, 3), dtype=np.uint8)
        * 255
    )
    for i in range(b):
        r, col = divmod(i, cols)
        tile = (x[i].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
        tile = tile.repeat(scale, 0).repeat(scale, 1)
        y0, x0 = pad + r * (h * scale + pad), pad + col * (w * scale + pad)
        canvas[y0 : y0 + h * scale, x0 : x0 + w * scale] = tile
    return Image.fromarray(canvas)


def save_progress_gif(
    path: str,
    truth: torch.Tensor,
    snapshots: Sequence[tuple[int, torch.Tensor]],
    order: Sequence[int] | None = None,
    reference_row: bool = True,
) -> None:
    """Animation of the reconstruction evolving (the truth above it for reference, when known:
    `reference_row=False` when it is not: `truth` then only gives the layout)."""
    if not snapshots:
        snapshots = [(0, truth * 0)]
    h, cols = truth.shape[-1], min(truth.shape[0], MAX_COLUMNS)
    scale = max(1, min(128 // h, 1024 // (cols * h)))  # big enough to see, at most ~1000 px wide
    reference = (
        grid_image(truth, scale)
        if reference_row
        else Image.new("RGB", (grid_image(truth, scale).width, 0))
    )
    frames = []
    for it, images in snapshots:
        imgs = images if order is None else images[torch.as_tensor(list(order))]
        grid = grid_image(imgs, scale)
        frame = Image.new("RGB", (reference.width, reference.height * 2 + 14), "white")
        frame.paste(reference, (0, 0))
        frame.paste(grid, (0, reference.height + 14))
        ImageDraw.Draw(frame).text((2, reference.height + 1), f"iteration {it}", fill=(0, 0, 0))
        frames.append(frame)
    durations = [120] * (len(frames) - 1) + [1500]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)


def save_curve(
    path: str,
    loss_history: Sequence[float],
    psnr_points: Sequence[tuple[int, float]],
    title: str = "",
) -> None:
    """Matching loss against iteration (log scale) and PSNR at the snapshot iterations."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    if loss_history:
        losses = np.asarray(loss_history, dtype=float)
        ax.plot(np.arange(len(losses)), losses, color="tab:blue", lw=1)
        if (losses > 0).all():
            ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("matching loss", color="tab:blue")
    if psnr_points:
        ax2 = ax.twinx()
        its, vals = zip(*psnr_points, strict=True)
        ax2.plot(its, vals, "o-", color="tab:red", ms=3, lw=1)
        ax2.set_ylabel("PSNR (dB)", color="tab:red")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_images_png(path: str, images: torch.Tensor, title: str = "") -> None:
    """A reconstruction alone (no ground truth to compare with), e.g. from a saved observation."""
    b = images.shape[0]
    cols = min(b, MAX_COLUMNS)
    rows = (b + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.6, 1.3 * cols + 0.6), 1.5 * rows + 0.5),
                             squeeze=False)  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    gray = images.shape[1] == 1
    for i in range(b):
        axes[i // cols, i % cols].imshow(_hwc(images[i]), cmap="gray" if gray else None, vmin=0,
                                         vmax=1)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
