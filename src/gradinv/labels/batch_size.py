"""Batch-size estimation: the weight gradient of a linear layer is a sum of B outer products
(∇W = Σ_k δ_k a_kᵀ / B), so its numerical rank is at most B — and equal to B when the layer is
wider than the batch and the samples' inputs are linearly independent (true for natural images).

Used in, e.g., Geng et al., "Towards General Deep Leakage in Federated Learning", 2021, and
Dimitrov et al. (SPEAR), NeurIPS 2024.

    >>> from gradinv.labels import estimate_batch_size
    >>> obs = observe(mlp4_model, images, labels, share_batch_size=False)
    >>> estimate_batch_size(obs).estimate            # == len(images) for B ≤ 1000
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GradinvError
from ..fl import Observation

SKETCH_START = 128  # rows of the first random sketch (enough for B < 128 in one pass)
CLASSIFIER_CONFIDENCE = 0.25  # cap when the only linear layer is the classifier
GRAM_MIN_RTOL = (
    1e-6  # above this tolerance the (faster) Gram-matrix eigenvalues are accurate enough
)


@dataclass
class BatchSizeEstimate:
    """estimate: the rank found. confidence in [0,1]: how clearly the singular values drop after
    the estimate (3 decades or more = 1; 0 when the layer is full rank, i.e. B may be larger).
    layer: the parameter used. exact_up_to: min(rows, cols) of that layer — estimates below it
    are exact in theory."""

    estimate: int
    confidence: float
    layer: str
    exact_up_to: int


def singular_values(matrix: torch.Tensor, rtol: float) -> torch.Tensor:
    """Singular values (descending, float64) of a 2-d tensor; through the smaller Gram matrix when
    the tolerance allows it (squaring the spectrum keeps ratios ≥ 1e-6 well above float64 eps)."""
    g = matrix.detach().double()
    if rtol < GRAM_MIN_RTOL:
        return torch.linalg.svdvals(g)
    gram = g @ g.T if g.shape[0] <= g.shape[1] else g.T @ g
    return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0).sqrt()


def sketched_rank(matrix: torch.Tensor, rtol: float) -> tuple[torch.Tensor, bool]:
    """Singular values of a Gaussian sketch Ω·G with k rows (k = 128, 512, ...): the sketch has
    the rank of G whenever that rank is below k, at a fraction of the cost of a full
    decomposition. Returns (values, complete) — complete is False when k reached min(G.shape)."""
    g = matrix.detach().double()
    small = g if g.shape[0] <= g.shape[1] else g.T
    gen = torch.Generator(device="cpu").manual_seed(0)
    k = SKETCH_START
    while k < small.shape[0]:
        omega = torch.randn(k, small.shape[0], generator=gen, dtype=torch.float64).to(g.device)
        s = singular_values(omega @ small, rtol)
        if int((s > s[0] * rtol).sum()) < k:
            return s, True
        k *= 4
    return singular_values(small, rtol), False


def estimate_batch_size(observation: Observation, rtol: float | None = None) -> BatchSizeEstimate:
    """Numerical rank of the widest linear layer's weight update (for FedAvg the first linear
    layer's input is the same at every local step, so its rank bound B still holds).

    rtol: singular values above rtol·s_max count (default 1e-4 for float32 updates, 1e-10 for
    float64). Raises a GradinvError when the model has no linear layer or the update is NaN/zero."""
    candidates = [(n, g) for n, g in observation.update.items() if g.ndim == 2]
    if not candidates:
        raise GradinvError(
            "batch-size estimation needs a linear (nn.Linear) layer; the model has none — "
            "pass the batch size explicitly"
        )
    name, grad = max(candidates, key=lambda item: min(item[1].shape))
    if not torch.isfinite(grad).all():
        raise GradinvError(
            f"the update of {name} contains NaN or Inf; cannot estimate the batch size"
        )
    if rtol is None:
        rtol = 1e-4 if grad.dtype != torch.float64 else 1e-10
    if not 0 < rtol < 1:
        raise GradinvError(f"rtol must be in (0, 1), got {rtol}")
    s, _ = sketched_rank(grad, rtol)
    if s[0] <= 0:
        raise GradinvError(f"the update of {name} is all zero; cannot estimate the batch size")
    rank = int((s > s[0] * rtol).sum())
    if rank < min(len(s), min(grad.shape)):
        gap = float(torch.log10(s[rank - 1] / s[rank].clamp_min(s[0] * 1e-300)))
        confidence = max(0.0, min(1.0, gap / 3.0))
    else:
        confidence = 0.0
    bound = min(grad.shape)
    if grad.shape[0] == observation.num_classes and name == candidates[-1][0]:
        # The classifier: its rows sum to zero (rank ≤ classes − 1) and rows of classes with
        # p ≈ 0 are nearly zero, so the rank is only a lower bound on B here.
        bound = min(grad.shape[0] - 1, grad.shape[1])
        confidence = min(confidence, CLASSIFIER_CONFIDENCE)
    return BatchSizeEstimate(rank, round(confidence, 4), name, bound)
