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


def ilrg(observation: Observation, batch_size: int) -> torch.Tensor:
    """Least squares on [A; 1ᵀ]·n = [B·∇b; B], clamped at 0 and rounded to B labels (classes with
    ∇b_c < 0 are certainly present and keep at least one)."""
    check_batch_size(batch_size, "ilrg")
    signal = last_layer_signal(observation, batch_size)
    a = ilrg_system(observation, signal)
    grad_b = signal.bias
    assert grad_b is not None
    lhs = torch.cat([a, torch.ones(1, a.shape[1], dtype=a.dtype, device=a.device)])
    rhs = torch.cat(
        [batch_size * grad_b, torch.tensor([float(batch_size)], dtype=a.dtype, device=a.device)]
    )
    counts = torch.linalg.lstsq(lhs.cpu(), rhs.cpu()[:, None], driver="gelsd").solution.flatten()
    return counts_to_labels(round_counts(counts, batch_size, (grad_b < 0).cpu()))
