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
GRAM_MIN_RTOL = (
    1e-6  # above this tolerance the (faster) Gram-matrix eigenvalues are accurate enough
)


@dataclass
class BatchSizeEstimate:
    """What the update reveals about the batch size B.

    estimate: B, when some hidden linear layer's rank stops short of what the layer could show
    (its bound) with a clear drop in its singular values; None when no layer can tell (e.g.
    LeNet, whose only linear layer is the classifier: its rank is ≤ 9 and counts distinct labels
    rather than samples, so it only bounds B from below).
    at_least: a lower bound that always holds (the largest numerical rank found).
    confidence in [0,1]: how clearly the singular values drop after the estimate (3 decades or
    more = 1). layer: the parameter the estimate (or the bound) comes from. exact_up_to: that
    layer's bound — estimates below it are exact in theory."""

    estimate: int | None
    confidence: float
    layer: str
    exact_up_to: int
    at_least: int = 1


MIN_CONFIDENCE = 0.5  # a drop of 1.5 decades: below that the rank is only a lower bound


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


def layer_rank(grad: torch.Tensor, rtol: float, classifier: bool) -> tuple[int, float, int]:
    """(numerical rank, confidence of the drop after it, bound the rank can reach) of one
    linear layer's weight update. A classifier's rows sum to zero: its rank is ≤ classes − 1."""
    s, _ = sketched_rank(grad, rtol)
    bound = min(grad.shape)
    if classifier:
        bound = min(grad.shape[0] - 1, grad.shape[1])
    if s[0] <= 0:
        return 0, 0.0, bound
    rank = int((s > s[0] * rtol).sum())
    if rank < len(s):
        gap = float(torch.log10(s[rank - 1] / s[rank].clamp_min(s[0] * 1e-300)))
        confidence = max(0.0, min(1.0, gap / 3.0))
    else:
        confidence = 0.0
    return rank, confidence, bound


def estimate_batch_size(observation: Observation, rtol: float | None = None) -> BatchSizeEstimate:
    """B from the numerical ranks of the linear layers' weight updates (∇W = Σ_k δ_k a_kᵀ / B has
    rank ≤ B; for FedAvg the first linear layer's input is the same at every local step, so the
    bound still holds). Every layer whose rank can reach B is used: a layer whose rank stops below
    its bound with a clear drop gives the estimate (the one with the largest bound wins);
    otherwise only a lower bound is reported (`estimate=None`, `at_least`).

    rtol: singular values above rtol·s_max count (default 1e-4 for float32 updates, 1e-10 for
    float64). Raises a GradinvError when the model has no linear layer or the update is NaN/zero."""
    candidates = [(n, g) for n, g in observation.update.items() if g.ndim == 2]
    if not candidates:
        raise GradinvError(
            "batch-size estimation needs a linear (nn.Linear) layer; the model has none — "
            "pass the batch size explicitly"
        )
    if rtol is not None and not 0 < rtol < 1:
        raise GradinvError(f"rtol must be in (0, 1), got {rtol}")
    rows = []
    for name, grad in candidates:
        if not torch.isfinite(grad).all():
            raise GradinvError(
                f"the update of {name} contains NaN or Inf; cannot estimate the batch size"
            )
        tol = rtol if rtol is not None else (1e-4 if grad.dtype != torch.float64 else 1e-10)
        classifier = grad.shape[0] == observation.num_classes and name == candidates[-1][0]
        rank, confidence, bound = layer_rank(grad, tol, classifier)
        rows.append((name, rank, confidence, bound, classifier))
    if all(r[1] == 0 for r in rows):
        raise GradinvError(
            "the linear layers' updates are all zero; cannot estimate the batch size"
        )
    at_least = max(r[1] for r in rows)
    # The classifier only bounds B from below: samples sharing a label have nearly equal
    # residuals p − e_y on an untrained model, so its rank counts distinct labels (measured:
    # LeNet, B = 8 with 6 distinct labels gives rank 6 with a clean drop).
    telling = [r for r in rows if not r[4] and 0 < r[1] < r[3] and r[2] >= MIN_CONFIDENCE]
    if telling:
        name, rank, confidence, bound, _ = max(telling, key=lambda r: r[3])
        return BatchSizeEstimate(rank, round(confidence, 4), name, bound, max(at_least, rank))
    name, rank, confidence, bound, _ = max(rows, key=lambda r: r[1])
    return BatchSizeEstimate(None, round(confidence, 4), name, bound, at_least)


def batch_size_of(observation: Observation) -> int:
    """The batch size the server was told, else the estimate; a GradinvError when the update
    cannot reveal it (the message gives the lower bound)."""
    if observation.batch_size is not None:
        return int(observation.batch_size)
    found = estimate_batch_size(observation)
    if found.estimate is None:
        raise GradinvError(
            f"the batch size is hidden and this model's update cannot reveal it (it shows at "
            f"least {found.at_least} samples; layer {found.layer} saturates at "
            f"{found.exact_up_to}): tell the server the batch size"
        )
    return int(found.estimate)
