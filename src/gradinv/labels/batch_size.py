"""Estimate the batch size from the numerical rank of a linear layer's weight gradient (rank ≤ B)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GradinvError
from ..fl import Observation


@dataclass
class BatchSizeEstimate:
    estimate: int
    confidence: float  # in [0,1]: how clearly the singular values drop after the estimate
    layer: str
    exact_up_to: int  # the rank bound min(rows, cols): estimates below it are exact in theory


def estimate_batch_size(observation: Observation, rtol: float | None = None) -> BatchSizeEstimate:
    """Rank of the widest linear layer's weight gradient. Exact when B ≤ min(width, input dim) and
    the samples' inputs are linearly independent (true for natural images)."""
    candidates = [(n, g) for n, g in observation.update.items() if g.ndim == 2]
    if not candidates:
        raise GradinvError("batch-size estimation needs a linear layer; the model has none")
    name, grad = max(candidates, key=lambda item: min(item[1].shape))
    s = torch.linalg.svdvals(grad.double())
    if s[0] <= 0:
        raise GradinvError(f"the gradient of {name} is zero; cannot estimate the batch size")
    if rtol is None:
        rtol = 1e-4 if grad.dtype == torch.float32 else 1e-10
    rank = int((s > s[0] * rtol).sum())
    # Confidence from the size of the drop at the rank cut, on a log scale.
    if rank < len(s):
        gap = float(torch.log10(s[rank - 1] / s[rank].clamp_min(1e-300)))
        confidence = max(0.0, min(1.0, gap / 3.0))
    else:
        confidence = 0.0  # full rank: B may exceed what this layer can reveal
    return BatchSizeEstimate(rank, confidence, name, min(grad.shape))
