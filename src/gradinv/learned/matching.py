"""The batch loss of learned inversion: a batch's images have no order, so each target image is
compared with the output slot the Hungarian assignment (scipy's linear_sum_assignment on the
pairwise MSE, per batch) gives it. The loss is therefore invariant to permuting the targets."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def assignment(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """For every example m and target j, the slot of `pred` (M, K, D) matched to `target`
    (M, B, D), B ≤ K: (M, B) indices minimising the total squared error of the matched pairs."""
    m, k, b = pred.shape[0], pred.shape[1], target.shape[1]
    if k == 1 and b == 1:
        return torch.zeros(m, 1, dtype=torch.long, device=pred.device)
    with torch.no_grad():
        cost = torch.cdist(target.double(), pred.double()).pow(2).cpu().numpy()
    out = np.empty((m, b), dtype=np.int64)
    for i in range(m):
        rows, cols = linear_sum_assignment(cost[i])
        out[i, rows] = cols
    return torch.from_numpy(out).to(pred.device)


def matched_mse(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example MSE of the matched pairs (M,), the assignment (M, B)). `pred` (M, K, …) and
    `target` (M, B, …) with B ≤ K; only the matched slots carry gradient."""
    flat_pred, flat_target = pred.flatten(2), target.flatten(2)
    slots = assignment(flat_pred, flat_target)
    matched = torch.gather(flat_pred, 1, slots[..., None].expand(-1, -1, flat_pred.shape[2]))
    return (matched - flat_target).pow(2).mean(dim=(1, 2)), slots
