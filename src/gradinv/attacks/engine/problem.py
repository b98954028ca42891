"""What every optimisation attack derives from the observation before optimising: the batch size,
the labels (observed, recovered, or optimised jointly), the priors, the update simulator and,
optionally, a starting reconstruction from another attack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ...errors import GradinvError
from ...fl import Observation
from ...labels import batch_size_of, recover_labels
from ...priors import Prior
from .simulate import Transform, UpdateSimulator


@dataclass
class Problem:
    """The inversion problem one observation poses, as the server can state it."""

    observation: Observation
    batch_size: int
    labels: torch.Tensor | None  # None: soft labels are optimised jointly
    labels_source: str
    priors: list[Prior]
    simulator: UpdateSimulator
    group: int = 1  # dummy batches per trial (group consistency), each of B images
    start: torch.Tensor | None = None  # (B, C, H, W) model inputs from another attack
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        observation: Observation,
        label_strategy: str,
        priors: Sequence[Prior] = (),
        layers: Sequence[str] | None = None,
        transform: Transform | None = None,
        masks: dict[str, torch.Tensor] | None = None,
    ) -> Problem:
        obs = observation
        batch_size = batch_size_of(obs)
        if obs.labels is not None:
            labels, source = obs.labels.to(obs.device), "observed"
        elif label_strategy == "joint":
            labels, source = None, "joint"
        else:
            if not obs.protocol.cross_entropy:
                raise GradinvError(
                    f"label recovery assumes a cross-entropy loss; this client trains with "
                    f"{obs.protocol.loss_name!r}: use --labels joint or share the labels"
                )
            labels = recover_labels(obs, label_strategy, batch_size).to(obs.device)
            source = label_strategy
        priors = list(priors)
        for p in priors:
            p.setup(obs)
        group = max([p.group_size() for p in priors], default=1)
        simulator = UpdateSimulator(obs, layers=layers, transform=transform, masks=masks)
        return cls(obs, batch_size, labels, source, priors, simulator, group)

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """One trial's model inputs (G·B, C, H, W) -> the B reconstructions in [0,1], on the CPU
        (group consistency fuses its members)."""
        images = self.observation.denormalize(x.detach())
        for p in self.priors:
            images = p.fuse(images, self.batch_size)
        return images.clamp(0, 1).cpu()
