"""auto: the strategy gradinv uses when labels are not observed — iDLG's exact rule for a batch of
one, bias-corrected counting (n_c = B·(p̄_c − ∇b_c), p̄ from the model on dummy inputs) for larger
batches. Chosen by measurement (docs/labels.md): on PyTorch-initialised and trained models it has
the best count accuracy of the strategies here (iLRG is better on DLG's U(−0.5,0.5) LeNet, whose
peaked outputs defeat the dummy-input estimate of p̄).

Zhao et al., "iDLG", 2020; Geng et al., "Towards General Deep Leakage in Federated Learning", 2021.

    >>> from gradinv.labels import recover_labels
    >>> obs = observe(model, images, labels)        # labels hidden from the server
    >>> recover_labels(obs, "auto")                  # B labels (a multiset), sorted
"""

from __future__ import annotations

import torch

from ..fl import Observation
from .bias_corrected import bias_corrected
from .common import check_batch_size
from .idlg import idlg


def auto(observation: Observation, batch_size: int) -> torch.Tensor:
    """iDLG for B = 1, bias-corrected counting for B > 1."""
    check_batch_size(batch_size, "auto")
    if batch_size == 1:
        return idlg(observation, 1)
    return bias_corrected(observation, batch_size)
