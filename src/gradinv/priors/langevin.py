from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fl import Observation
from .base import Prior


@dataclass
class LangevinNoise(Prior):
    """Langevin dynamics (Welling & Teh, ICML 2011), as used as an image prior for inversion:
    after every optimiser step add Gaussian noise to the dummy images, with standard deviation
    `weight` (in [0,1] pixel units) decaying linearly to 0 at `decay` × the iteration budget.
    It adds nothing to the loss; the noise helps escape poor local minima early on.

    Example::

        attack = InvertingGradients(priors=(("tv", 1e-2), ("langevin", 0.01)))
        rec = attack.reconstruct(obs)   # noise 0.01 at the start, 0 from 80 % of the budget on
        print(rec.info["final_loss"])
    """

    decay: float = 0.8  # fraction of the iterations after which the noise is 0

    def setup(self, observation: Observation) -> None:
        self._std = observation._stat(observation.std)

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return (images * 0).flatten(1).sum(1)  # differentiable zeros

    def scale(self, iteration: int, total: int) -> float:
        """Noise standard deviation (pixel units) after step `iteration` of `total`."""
        end = max(1.0, self.decay * total)
        return self.weight * max(0.0, 1.0 - (iteration + 1) / end)

    def after_step(
        self, x: torch.Tensor, iteration: int, total: int, generator: torch.Generator
    ) -> None:
        sigma = self.scale(iteration, total)
        if sigma <= 0:
            return
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            x.add_(noise.to(x.device, x.dtype) * sigma / self._std.to(x.dtype))
