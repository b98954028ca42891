"""Label recovery from the shared update, and batch-size estimation.

A strategy is a callable `(observation, batch_size) -> LongTensor of B labels` (a multiset, sorted)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import GradinvError
from ..fl import Observation
from ..registry import Registry
from .batch_size import BatchSizeEstimate, estimate_batch_size
from .common import last_layer_signal

Strategy = Callable[[Observation, int], torch.Tensor]
STRATEGIES: Registry[Strategy] = Registry("label strategy")


@STRATEGIES.register(
    "idlg", "iDLG (Zhao et al. 2020): B=1, the one class whose last-layer gradient is negative"
)
def idlg(observation: Observation, batch_size: int) -> torch.Tensor:
    if batch_size != 1:
        raise GradinvError(f"label strategy 'idlg' handles batch size 1 only, got {batch_size}")
    signal = last_layer_signal(observation)
    return signal.per_class.argmin().view(1).cpu()


@STRATEGIES.register(
    "yin",
    "GradInversion (Yin et al. 2021): B classes with the most negative row minimum; unique labels only",
)
def yin(observation: Observation, batch_size: int) -> torch.Tensor:
    signal = last_layer_signal(observation)
    if batch_size > signal.weight.shape[0]:
        raise GradinvError(
            f"label strategy 'yin' recovers distinct labels only: batch size {batch_size} > "
            f"{signal.weight.shape[0]} classes"
        )
    row_min = signal.weight.min(dim=1).values
    return row_min.argsort()[:batch_size].sort().values.cpu()


@STRATEGIES.register("auto", "idlg for a batch of one, yin otherwise")
def auto(observation: Observation, batch_size: int) -> torch.Tensor:
    return idlg(observation, 1) if batch_size == 1 else yin(observation, batch_size)


def recover_labels(
    observation: Observation, strategy: str = "auto", batch_size: int | None = None
) -> torch.Tensor:
    """Recovered label multiset (sorted int64 tensor of length B) using a registered strategy."""
    fn = STRATEGIES.get(strategy)
    b = batch_size or observation.batch_size or estimate_batch_size(observation).estimate
    if b < 1:
        raise GradinvError(f"batch size must be >= 1, got {b}")
    return fn(observation, b).long()


__all__ = [
    "STRATEGIES",
    "BatchSizeEstimate",
    "estimate_batch_size",
    "last_layer_signal",
    "recover_labels",
]
