"""The objective an optimisation attack minimises: a weighted gradient distance plus image priors
plus optional terms on the optimised variables (e.g. a latent-norm penalty), per trial."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ...priors import Prior
from ..distances import DISTANCES, Distance
from .simulate import UpdateSimulator

# A term on the optimised variables (each with a leading trial dimension): returns (R,) values.
Term = Callable[[Sequence[torch.Tensor]], torch.Tensor]


@dataclass
class Objective:
    """weight · D(ĝ(x̂), g) + Σ priors(x̂) + Σ terms(variables), one value per trial.

    A trial holds G·B images (G dummy batches of B images: G > 1 for group consistency). The
    distance and the ordinary priors are summed over the G members; joint priors (group
    consistency) see all G·B images of a trial."""

    simulator: UpdateSimulator
    batch_size: int
    distance: str | Distance = "cosine"
    priors: Sequence[Prior] = ()
    terms: Sequence[Term] = ()
    distance_weight: float = 1.0
    group: int = 1
    denormalize: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda x: x)
    # Divide each trial's distance by its value at the trial's start, so prior weights mean the
    # same on every model (raw distances differ by orders of magnitude between models).
    relative: bool = False

    def __post_init__(self) -> None:
        self._distance = (
            DISTANCES.get(self.distance) if isinstance(self.distance, str) else self.distance
        )
        self._scale: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the start values (a new set of trials begins)."""
        self._scale = None

    def matching(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """D(ĝ, g) per trial, summed over the trial's G members. x: (R, G·B, C, H, W) in model
        input space; targets: (B,) indices or (R, G·B, K) probabilities."""
        r, g, b = x.shape[0], self.group, self.batch_size
        members = x.reshape(r * g, b, *x.shape[2:])
        if targets.ndim > 1:
            targets = targets.reshape(r * g, b, *targets.shape[2:])
        pred = self.simulator(members, targets)
        return self._distance(pred, self.simulator.target).reshape(r, g).sum(1)

    def __call__(
        self, x: torch.Tensor, targets: torch.Tensor, variables: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(total, distance), each of shape (R,)."""
        distance = self.matching(x, targets)
        total = distance if self.distance_weight == 1.0 else self.distance_weight * distance
        if self.relative:
            if self._scale is None or self._scale.shape != distance.shape:
                # per member: each of the G members is scaled as a single run would be
                self._scale = self.group / distance.detach().abs().clamp_min(1e-30)
            total = total * self._scale
        own = [p for p in self.priors if not p.joint and p.weight]
        joint = [p for p in self.priors if p.joint and p.weight]
        if own or joint:
            images = self.denormalize(x)
            r, g, b = x.shape[0], self.group, self.batch_size
            members = images.reshape(r * g, b, *images.shape[2:])
            for p in own:
                total = total + p.weight * p.penalty(members).reshape(r, g).sum(1)
            for p in joint:
                total = total + p.weight * p.penalty(images)
        for term in self.terms:
            total = total + term(variables)
        return total, distance
