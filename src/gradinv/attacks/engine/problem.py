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
        defense_aware: bool = False,
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
        layers, transform, masks, info = None, None, None, {}
        if defense_aware and obs.defenses:
            layers, transform, masks = defense_model(obs)
            info = {"defense_aware": [d.get("name") for d in obs.defenses]}
        simulator = UpdateSimulator(obs, layers=layers, transform=transform, masks=masks)
        return cls(obs, batch_size, labels, source, priors, simulator, group, info=info)

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """One trial's model inputs (G·B, C, H, W) -> the B reconstructions in [0,1], on the CPU
        (group consistency fuses its members)."""
        images = self.observation.denormalize(x.detach())
        for p in self.priors:
            images = p.fuse(images, self.batch_size)
        return images.clamp(0, 1).cpu()


def defense_model(
    observation: Observation,
) -> tuple[list[str] | None, Transform, dict[str, torch.Tensor] | None]:
    """What an attacker who knows the recorded defenses does: re-apply their deterministic part
    to each simulated update (estimating what it lacks from the observed update: clip bound from
    the norm, pruning mask from the zeros, Soteria's mask from zero columns) and compare only the
    layers and entries where the observed update carries information."""
    from ...defenses import Defense

    defenses = [Defense.from_dict(d) for d in observation.defenses]
    observed = observation.update
    names = list(observed)
    for d in defenses:
        names = d.layers(names)
    masks: dict[str, torch.Tensor] = {}
    for d in defenses:
        for k, m in (d.informative(observed) or {}).items():
            masks[k] = m if k not in masks else masks[k] & m

    def transform(update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for d in defenses:
            update = d.simulate(update, observed)
        return update

    layers = None if names == list(observed) else names
    return layers, transform, masks or None
