"""GradInversion's label rule: the B classes whose last-layer weight-gradient row has the most
negative minimum. Distinct labels only: a batch with repeated labels gets B distinct classes.

Yin et al., "See through Gradients: Image Batch Recovery via GradInversion", CVPR 2021.

    >>> from gradinv.labels import recover_labels
    >>> obs = observe(model, images, labels)        # labels all distinct
    >>> recover_labels(obs, "yin")                   # the B distinct labels, sorted
"""

from __future__ import annotations

import torch

from ..errors import GradinvError
from ..fl import Observation
from .common import check_batch_size, last_layer_signal


def yin(observation: Observation, batch_size: int) -> torch.Tensor:
    """argsort(min_j ∇W_cj)[:B]; raises when B exceeds the number of classes (repeats are then
    certain and this rule cannot express them: use llg, bias-corrected, ilrg or auto)."""
    check_batch_size(batch_size, "yin")
    signal = last_layer_signal(observation, batch_size)
    classes = signal.weight.shape[0]
    if batch_size > classes:
        raise GradinvError(
            f"label strategy 'yin' recovers distinct labels only: batch size {batch_size} > "
            f"{classes} classes, so labels repeat; use llg, bias-corrected, ilrg or auto"
        )
    row_min = signal.weight.min(dim=1).values
    return row_min.argsort()[:batch_size].sort().values.cpu()
