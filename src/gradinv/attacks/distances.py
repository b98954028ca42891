"""Gradient distances D(ĝ, g) over lists of per-layer tensors; a registry so attacks share them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..registry import Registry

Distance = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]
DISTANCES: Registry[Distance] = Registry("distance")


@DISTANCES.register("l2", "sum over layers of squared differences (DLG)")
def l2(pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((p - t).pow(2).sum() for p, t in zip(pred, target, strict=True))  # type: ignore[return-value]


@DISTANCES.register("cosine", "1 - cosine similarity over all layers jointly (Inverting Gradients)")
def cosine(pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    dot = sum((p * t).sum() for p, t in zip(pred, target, strict=True))
    pn = sum(p.pow(2).sum() for p in pred)
    tn = sum(t.pow(2).sum() for t in target)
    return 1 - dot / (pn.sqrt() * tn.sqrt()).clamp_min(1e-30)  # type: ignore[union-attr]


@DISTANCES.register("l1", "sum over layers of absolute differences")
def l1(pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((p - t).abs().sum() for p, t in zip(pred, target, strict=True))  # type: ignore[return-value]
