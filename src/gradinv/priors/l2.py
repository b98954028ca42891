from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Prior


@dataclass
class L2Norm(Prior):
    """Squared l2 norm of the image, ‖x̂‖² = Σ x̂², averaged over the batch (the "l2" image prior of
    DeepInversion, Yin et al. CVPR 2020, and GradInversion, Yin et al. CVPR 2021).

    Example::

        prior = make_prior("l2", 1e-6)
        value = prior(torch.ones(1, 3, 2, 2))  # 1e-6 * 12
        attack = InvertingGradients(priors=(("l2", 1e-6),))
    """

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return images.pow(2).flatten(2).sum(2).mean(1)
