"""LLG: label counts from the row sums of the last-layer weight gradient, with a greedy that
subtracts a per-sample impact from the class just chosen.

Wainakh et al., "User-Level Label Leakage from Gradients in Federated Learning", PETS 2022.

    >>> from gradinv.labels import recover_labels
    >>> obs = observe(model, images, labels)        # labels may repeat
    >>> recover_labels(obs, "llg")                   # B labels (a multiset), sorted
"""

from __future__ import annotations

import torch

from ..fl import Observation
from .common import check_batch_size, greedy_labels, last_layer_signal


def llg(observation: Observation, batch_size: int) -> torch.Tensor:
    """g_c = Σ_j ∇W_cj; impact m = (1/B)·Σ_{g_c<0} g_c·(1 + 1/K). Every class with g_c < 0 is
    taken once (g_c −= m), then B − |taken| times the argmin class c is taken and g_c −= m for
    that same class c."""
    check_batch_size(batch_size, "llg")
    signal = last_layer_signal(observation, batch_size)
    g = signal.weight.sum(dim=1)
    classes = len(g)
    negative = g < 0
    impact = g[negative].sum() / batch_size * (1 + 1 / classes)
    return greedy_labels(g, negative, batch_size, -float(impact))
