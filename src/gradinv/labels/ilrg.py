"""iLRG: instance-wise label restoration. Per class, ē_c = ∇W_c / ∇b_c is a weighted mean of the
batch's embeddings; its probabilities through the last layer fill a linear system whose solution
is the class counts.

Ma et al., "Instance-wise Batch Label Restoration via Gradients in Federated Learning", ICLR 2023.

    >>> from gradinv.labels import recover_labels
    >>> obs = observe(model, images, labels)
    >>> recover_labels(obs, "ilrg")                  # B labels (a multiset), sorted
"""

from __future__ import annotations

import torch

from ..errors import GradinvError
from ..fl import Observation
from .common import (
    LastLayerSignal,
    check_batch_size,
    classifier,
    counts_to_labels,
    last_layer_signal,
    round_counts,
)


def ilrg_system(observation: Observation, signal: LastLayerSignal) -> torch.Tensor:
    """The matrix A (classes × classes), A[i, j] = p̂_j[i] − δ_ij, with p̂_j = softmax(W ē_j + b)
    the estimated probabilities of a sample of class j. Then B·∇b = A·n for counts n."""
    if signal.bias is None:
        raise GradinvError(
            "label strategy 'ilrg' needs a bias in the last layer; this model has none "
            "(use llg or bias-corrected)"
        )
    weight, bias = classifier(observation, signal)
    grad_b = signal.bias
    safe = torch.where(grad_b.abs() > 1e-300, grad_b, torch.full_like(grad_b, 1e-300))
    centroids = signal.weight / safe[:, None]  # ē_j, one row per class
    probs = torch.softmax(centroids @ weight.T + bias, dim=1)  # row j: p̂_j
    return probs.T - torch.eye(len(grad_b), dtype=probs.dtype, device=probs.device)


VARIANCE_FLOOR = 0.05


def integer_counts(
    a: torch.Tensor, target: torch.Tensor, start: torch.Tensor, required: torch.Tensor
) -> torch.Tensor:
    """Integer counts n ≥ 0 (n_c ≥ 1 where `required`) with the sum of `start`, minimising
    ‖a·n − target‖² by moving one sample at a time between classes until no move helps."""
    n = start.clone().double()
    residual = a @ n - target
    best = float(residual.dot(residual))
    classes = len(n)
    while True:
        # moving one count from class i to class j changes the residual by a[:, j] − a[:, i]
        diff = a.T[None, :, :] - a.T[:, None, :]  # (i, j, rows)
        new = residual[None, None, :] + diff
        cost = (new * new).sum(-1)
        floor = required.double()
        cost[n <= floor, :] = float("inf")
        cost[torch.arange(classes), torch.arange(classes)] = float("inf")
        flat = int(cost.argmin())
        i, j = divmod(flat, classes)
        if not float(cost[i, j]) < best - 1e-12:
            return n.long()
        n[i] -= 1
        n[j] += 1
        residual = residual + diff[i, j]
        best = float(cost[i, j])


def ilrg(observation: Observation, batch_size: int) -> torch.Tensor:
    """iLRG's system [A; 1ᵀ]·n = [B·∇b; B] solved over integer counts: the rounded least-squares
    solution, then one-sample moves between classes while the weighted residual drops. Rows of
    dominant classes (whose probabilities vary most across samples) are weighted down by
    1/sqrt(Σ_j n_j p̂_j[i](1 − p̂_j[i]) + floor); classes with ∇b_c < 0 keep at least one sample."""
    check_batch_size(batch_size, "ilrg")
    signal = last_layer_signal(observation, batch_size)
    a = ilrg_system(observation, signal).cpu()
    assert signal.bias is not None
    target = (batch_size * signal.bias).cpu()
    required = target < 0
    lhs = torch.cat([a, torch.ones(1, a.shape[1], dtype=a.dtype)])
    rhs = torch.cat([target, torch.tensor([float(batch_size)], dtype=a.dtype)])
    real = torch.linalg.lstsq(lhs, rhs[:, None], driver="gelsd").solution.flatten()
    start = round_counts(real, batch_size, required)
    probs = a + torch.eye(len(target), dtype=a.dtype)
    variance = (probs * (1 - probs)) @ start.double()
    weights = 1 / torch.sqrt(variance + VARIANCE_FLOOR)
    counts = integer_counts(weights[:, None] * a, weights * target, start, required)
    return counts_to_labels(counts)
