from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fl import Observation


@dataclass
class Prior:
    """Base class: `weight · penalty(images)` is added to the matching loss.

    `penalty` takes K dummy batches at once, images of shape (K, B, C, H, W) in [0,1], and returns
    K values (K trials of an attack optimised together). Calling the prior on one batch
    (B, C, H, W) returns the weighted scalar.

    Most priors only write `penalty`. Priors that need the optimiser's cooperation override the
    hooks below (all no-ops by default, so a plain prior leaves the optimisation unchanged):
    `group_size` (how many dummy batches are optimised jointly), `initial` (adjust the initial
    iterate of the G·B images), `joint` (penalty sees the whole group instead of one member),
    `fuse` (turn the group into the B output images) and `after_step` (act on the iterate)."""

    weight: float = 0.0

    # class-level flag: True when `penalty` is given all G·B images of the group at once
    joint = False

    def setup(self, observation: Observation) -> None:
        """Called once before optimisation (e.g. to hook BatchNorm layers). Default: nothing."""

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        """(K, B, C, H, W) -> (K,) unweighted penalties."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 4:
            return self.weight * self.penalty(images[None])[0]
        return self.weight * self.penalty(images)

    # --- hooks for priors that need the optimiser's cooperation ---------------------------------
    def group_size(self) -> int:
        """Number of dummy batches optimised jointly (group consistency); 1 for ordinary priors."""
        return 1

    def initial(self, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Adjust the initial iterate (G·B images, model input space). Default: unchanged."""
        return x

    def fuse(self, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Turn the G·B images ([0,1]) of a group into the B reconstructions. Default: unchanged."""
        return images

    def after_step(
        self, x: torch.Tensor, iteration: int, total: int, generator: torch.Generator
    ) -> None:
        """Modify the iterate in place (model input space) after each optimiser step."""
