"""A simulated client: computes its update on a private batch and hands the server an Observation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from ..errors import GradinvError
from .observation import Observation
from .protocol import Protocol, batchnorm_statistics, simulate_update


def observe(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    protocol: Protocol | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    share_labels: bool = False,
    share_batch_size: bool = True,
    share_buffers: bool = True,
    train_mode: bool = True,
    model_spec: dict[str, Any] | None = None,
    share_batch_stats: bool = False,
) -> Observation:
    """Run one client round on `images` (B, C, H, W) in [0,1] and return what the server sees.

    The client's model is left untouched (BatchNorm statistics included). `share_batch_stats`
    also reveals the batch's statistics at every BatchNorm input (`Observation.batch_stats`)."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise GradinvError(
            f"images must be a non-empty (B, C, H, W) batch, got {tuple(images.shape)}"
        )
    if labels.shape != (images.shape[0],):
        raise GradinvError(f"{tuple(labels.shape)} labels for {images.shape[0]} images")
    if not torch.isfinite(images).all():
        raise GradinvError("images contain NaN or Inf")
    protocol = protocol or Protocol()
    c = images.shape[1]
    mean = tuple(mean) if mean is not None else (0.0,) * c
    std = tuple(std) if std is not None else (1.0,) * c
    p = next(model.parameters())
    images, labels = images.to(p.device, p.dtype), labels.to(p.device)
    params = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    obs = Observation(
        model=model,
        parameters=params,
        update={k: torch.zeros_like(v) for k, v in params.items()},
        input_shape=tuple(images.shape[1:]),  # type: ignore[arg-type]
        num_classes=int(_num_outputs(model, images)),
        buffers=buffers if share_buffers else {},
        protocol=protocol,
        mean=mean,
        std=std,
        batch_size=images.shape[0] if share_batch_size else None,
        labels=labels.clone() if share_labels else None,
        train_mode=train_mode,
        model_spec=model_spec,
    )
    was_training = model.training
    model.train(train_mode)
    try:
        update = simulate_update(
            model, obs.trainable(), buffers, obs.normalize(images), labels, protocol
        )
        if share_batch_stats:
            with torch.no_grad():
                stats = batchnorm_statistics(model, params, buffers, obs.normalize(images))
            obs.batch_stats = {k: v.detach() for k, v in stats.items()}
    finally:
        model.train(was_training)
    obs.update = {k: v.detach().contiguous() for k, v in update.items()}
    return obs


def _num_outputs(model: nn.Module, images: torch.Tensor) -> int:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(images[:1])
    model.train(was_training)
    if out.ndim != 2:
        raise GradinvError(f"model output must be (batch, classes) logits, got {tuple(out.shape)}")
    return out.shape[1]


def aggregate(observations: Sequence[Observation]) -> Observation:
    """Server-side aggregation of K clients' updates, weighted by their batch sizes (FedAvg's rule).

    For FedSGD with known batch sizes this equals one client holding the union of the batches."""
    if not observations:
        raise GradinvError("nothing to aggregate: no observations")
    sizes = [o.batch_size or 1 for o in observations]
    total = sum(sizes)
    first = observations[0]
    update = {
        k: sum(o.update[k] * (n / total) for o, n in zip(observations, sizes, strict=True))
        for k in first.update
    }
    labels = None
    if all(o.labels is not None for o in observations):
        labels = torch.cat([o.labels for o in observations])  # type: ignore[misc]
    known = all(o.batch_size is not None for o in observations)
    return Observation(
        **{
            **first.__dict__,
            "update": update,
            "labels": labels,
            "batch_size": total if known else None,
            "num_clients": sum(o.num_clients for o in observations),
            "batch_stats": {},  # per-client statistics do not describe the union
        }
    )
