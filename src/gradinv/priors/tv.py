from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Prior


@dataclass
class TotalVariation(Prior):
    """Total variation (Rudin et al. 1992), as in Inverting Gradients:
    mean|x[..., 1:, :] − x[..., :-1, :]| + mean|x[..., :, 1:] − x[..., :, :-1]|.
    `isotropic=True` uses mean sqrt(dx² + dy² + ε) instead.

    Example::

        prior = make_prior("tv", 1e-2)
        value = prior(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))  # 1e-2 * (0 + 1)
        attack = DLG(priors=(("tv", 1e-2),))
    """

    isotropic: bool = False

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        dy = images[..., 1:, :] - images[..., :-1, :]
        dx = images[..., :, 1:] - images[..., :, :-1]
        if not self.isotropic:
            return dy.abs().flatten(1).mean(1) + dx.abs().flatten(1).mean(1)
        return (dy[..., :, :-1].pow(2) + dx[..., :-1, :].pow(2) + 1e-8).sqrt().flatten(1).mean(1)
