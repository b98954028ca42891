"""Reconstruction quality, always in [0,1] pixel space, after matching reconstructions to ground truth."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from skimage.metrics import structural_similarity

from .errors import GradinvError


def _check(recon: torch.Tensor, truth: torch.Tensor) -> None:
    if recon.shape != truth.shape:
        raise GradinvError(
            f"reconstruction {tuple(recon.shape)} and truth {tuple(truth.shape)} differ"
        )
    if recon.ndim != 4 or recon.shape[0] == 0:
        raise GradinvError(f"expected a non-empty (B, C, H, W) batch, got {tuple(recon.shape)}")


def mse(recon: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Per-image mean squared error (images in [0,1])."""
    _check(recon, truth)
    diff = recon.detach().double().cpu() - truth.detach().double().cpu()
    return diff.pow(2).flatten(1).mean(1).numpy()


def psnr(recon: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Per-image PSNR in dB, 10·log10(1/MSE) with data range 1; exact copies are capped at 300 dB."""
    return 10 * np.log10(1.0 / np.maximum(mse(recon, truth), 1e-30))


def ssim(recon: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Per-image SSIM as the field computes it (Wang et al. 2004): an 11×11 Gaussian window with
    σ = 1.5, population covariances, data range 1, channels averaged (scikit-image). Images smaller
    than the window (e.g. 8×8 digits) use a smaller σ, so the window fits."""
    _check(recon, truth)
    a = recon.detach().double().cpu().numpy()
    b = truth.detach().double().cpu().numpy()
    side = min(a.shape[-2:])
    # scikit-image's window spans 2·int(3.5σ + 0.5) + 1 pixels: shrink σ until it fits
    sigma = min(1.5, max(0.1, ((side - 1) // 2 - 0.5) / 3.5))
    return np.array(
        [
            structural_similarity(x, y, data_range=1.0, channel_axis=0, gaussian_weights=True,
                                  sigma=sigma, use_sample_covariance=False)
            for x, y in zip(a, b, strict=True)
        ]
    )  # fmt: skip


def match(recon: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Order of reconstructions that best matches the truth (Hungarian assignment on pairwise MSE):
    recon[order[i]] is compared with truth[i]."""
    _check(recon, truth)
    r = recon.detach().double().cpu().flatten(1)
    t = truth.detach().double().cpu().flatten(1)
    cost = torch.cdist(t, r).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def label_accuracy(recovered: torch.Tensor | list[int], true: torch.Tensor | list[int]) -> float:
    """Multiset overlap of recovered and true labels, divided by the batch size."""
    rec = Counter(int(v) for v in recovered)
    tru = Counter(int(v) for v in true)
    if not tru:
        raise GradinvError("no true labels to compare with")
    return sum((rec & tru).values()) / sum(tru.values())


def evaluate(
    recon: torch.Tensor,
    truth: torch.Tensor,
    recovered_labels: torch.Tensor | None = None,
    true_labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """All scores for one reconstruction; per-image lists follow the order of `truth`."""
    order = match(recon, truth)
    matched = recon[torch.as_tensor(order)]
    p, s, m = psnr(matched, truth), ssim(matched, truth), mse(matched, truth)
    acc = None
    if recovered_labels is not None and true_labels is not None:
        acc = label_accuracy(recovered_labels, true_labels)
    return {
        "psnr": float(p.mean()),
        "psnr_per_image": [float(v) for v in p],
        "ssim": float(s.mean()),
        "ssim_per_image": [float(v) for v in s],
        "mse": float(m.mean()),
        "mse_per_image": [float(v) for v in m],
        "label_accuracy": acc,
        "assignment": [int(v) for v in order],
    }
