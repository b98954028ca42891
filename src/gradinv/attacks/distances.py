"""Gradient distances D(ĝ, g): a registry so attacks share them.

`pred` holds one tensor per layer with a leading member dimension M (M dummy batches evaluated at
once); `target` holds the observed update without it. Every distance returns a tensor of M values."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..registry import Registry

Distance = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]
DISTANCES: Registry[Distance] = Registry("distance")


def _sum(values: Sequence[torch.Tensor]) -> torch.Tensor:
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


@DISTANCES.register("l2", "sum over layers of squared differences (DLG)")
def l2(pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    return _sum([(p - t).pow(2).flatten(1).sum(1) for p, t in zip(pred, target, strict=True)])


@DISTANCES.register("cosine", "1 - cosine similarity over all layers jointly (Inverting Gradients)")
def cosine(pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    dot = _sum([(p * t).flatten(1).sum(1) for p, t in zip(pred, target, strict=True)])
    pn = _sum([p.pow(2).flatten(1).sum(1) for p in pred])
    tn = _sum([t.pow(2).sum() for t in target])
    return 1 - dot / (pn.sqrt() * tn.sqrt()).clamp_min(1e-30)


@DISTANCES.register("l1", "sum over layers of absolute differences")
def l1(pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    return _sum([(p - t).abs().flatten(1).sum(1) for p, t in zip(pred, target, strict=True)])


@DISTANCES.register("l2-layers", "mean over layers of squared differences (GGL)")
def l2_layers(pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    return l2(pred, target) / len(pred)
