"""iDLG: the label of a single sample from the sign of the last-layer gradient.

Zhao, Mopuri & Bilen, "iDLG: Improved Deep Leakage from Gradients", arXiv 2020.

    >>> from gradinv.labels import recover_labels
    >>> obs = observe(model, image, label)          # a batch of one
    >>> recover_labels(obs, "idlg")                  # tensor([label])
"""

from __future__ import annotations

import torch

from ..errors import GradinvError
from ..fl import Observation
from .common import check_batch_size, last_layer_signal


def idlg(observation: Observation, batch_size: int) -> torch.Tensor:
    """B=1: ∇b_c = p_c − 1[y=c] is negative for the true class only. Without a bias every row of
    ∇W is (p_c − 1[y=c])·a, a multiple of the embedding a: the true row is the one whose
    coefficient has the odd sign out (for 2 classes, a is assumed to have a positive sum)."""
    check_batch_size(batch_size, "idlg")
    if batch_size != 1:
        raise GradinvError(
            f"label strategy 'idlg' handles batch size 1 only, got {batch_size}; "
            "use llg, bias-corrected, ilrg or auto for larger batches"
        )
    signal = last_layer_signal(observation, 1)
    if signal.bias is not None:
        return signal.bias.argmin().view(1).cpu()
    weight = signal.weight
    direction = torch.linalg.svd(weight, full_matrices=False).Vh[0]
    coef = weight @ direction
    if len(coef) >= 3:
        if int((coef > 0).sum()) < int((coef < 0).sum()):
            coef = -coef  # the true class is the one whose sign differs from the majority
    elif direction.sum() < 0:
        coef = -coef
    return coef.argmin().view(1).cpu()
