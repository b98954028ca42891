"""auto: the strategy gradinv uses when labels are not observed — iDLG's exact rule for a batch of
one; for larger batches iLRG's system solved over integer counts (a local search from the rounded
least-squares solution); bias-corrected counting for models whose last layer has no bias.

Ma et al., "Instance-wise Batch Label Restoration via Gradients in Federated Learning", ICLR 2023;
Zhao et al., "iDLG", 2020.

    >>> from gradinv.labels import recover_labels
    >>> obs = observe(model, images, labels)        # labels hidden from the server
    >>> recover_labels(obs, "auto")                  # B labels (a multiset), sorted
"""

from __future__ import annotations

import torch

from ..fl import Observation
from .bias_corrected import bias_corrected
from .common import check_batch_size, counts_to_labels, last_layer_signal, round_counts
from .idlg import idlg
from .ilrg import ilrg_system

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


def auto(observation: Observation, batch_size: int) -> torch.Tensor:
    """See the module docstring; the choice depends only on B and on whether the last layer has a bias."""
    check_batch_size(batch_size, "auto")
    if batch_size == 1:
        return idlg(observation, 1)
    signal = last_layer_signal(observation, batch_size)
    if signal.bias is None:
        return bias_corrected(observation, batch_size)
    a = ilrg_system(observation, signal).cpu()
    target = (batch_size * signal.bias).cpu()
    required = target < 0
    ones = torch.ones(1, a.shape[1], dtype=a.dtype)
    lhs = torch.cat([a, ones])
    rhs = torch.cat([target, torch.tensor([float(batch_size)], dtype=a.dtype)])
    real = torch.linalg.lstsq(lhs, rhs[:, None], driver="gelsd").solution.flatten()
    start = round_counts(real, batch_size, required)
    # Rows of dominant classes carry the largest error (the spread of p over samples): weight
    # each row by 1/sqrt(its expected variance Σ_j n_j p̂_j[i](1 − p̂_j[i]) + floor).
    probs = a + torch.eye(len(target), dtype=a.dtype)
    variance = (probs * (1 - probs)) @ start.double()
    weights = 1 / torch.sqrt(variance + VARIANCE_FLOOR)
    counts = integer_counts(weights[:, None] * a, weights * target, start, required)
    return counts_to_labels(counts)
