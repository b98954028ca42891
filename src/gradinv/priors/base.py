from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fl import Observation


@dataclass
class Prior:
    """Base class: `weight · penalty(images)` is added to the matching loss."""

    weight: float = 0.0

    def setup(self, observation: Observation) -> None:
        """Called once before optimisation (e.g. to hook BatchNorm layers). Default: nothing."""

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.weight * self.penalty(images)
