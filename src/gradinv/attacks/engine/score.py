"""The server's only yardstick: how well a candidate reconstruction explains the observed update.
Used to choose among restarts, attacks and configurations without ever looking at the private
images."""

from __future__ import annotations

import torch

from ...fl import Observation
from ...labels import recover_labels
from ..distances import DISTANCES
from .simulate import UpdateSimulator


def matching_loss(
    observation: Observation,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    distance: str = "cosine",
    simulator: UpdateSimulator | None = None,
    dtype: torch.dtype | None = torch.float64,
) -> float:
    """D(ĝ(images, labels), g) for a reconstruction in [0,1] (cosine by default: scale-free, so
    attacks that matched with different distances are compared fairly). Labels: the given ones,
    else the observed ones, else recovered with the "auto" strategy (cross-entropy clients).

    The update is simulated in `dtype` (float64 by default; None: the observation's own): a
    float32 cosine distance bottoms out near 1e-7, where an exact reconstruction and one of 23 dB
    look alike, and the comparison between candidates would be decided by rounding."""
    obs = observation
    if labels is None:
        labels = obs.labels
    if labels is None:
        labels = recover_labels(obs, "auto", images.shape[0])
    if simulator is None and dtype is not None and obs.dtype != dtype:
        obs = obs.to(obs.device, dtype)
    simulator = simulator or UpdateSimulator(obs)
    x = obs.normalize(images.to(obs.device, obs.dtype))[None]
    with torch.no_grad():
        pred = simulator(x, labels.to(obs.device))
        value = DISTANCES.get(distance)(pred, simulator.target)
    return float(value[0])
