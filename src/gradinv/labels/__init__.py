"""Label recovery from the shared update, and batch-size estimation.

A strategy is a callable `(observation, batch_size) -> LongTensor of B labels` (a multiset, sorted).
`recover_labels(observation, strategy, batch_size)` runs one by name; when neither the caller nor
the observation gives the batch size it is estimated with `estimate_batch_size`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import GradinvError
from ..fl import Observation
from ..registry import Registry
from .auto import auto
from .batch_size import BatchSizeEstimate, batch_size_of, estimate_batch_size
from .bias_corrected import bias_corrected
from .common import last_layer_signal
from .idlg import idlg
from .ilrg import ilrg
from .llg import llg
from .yin import yin

Strategy = Callable[[Observation, int], torch.Tensor]
STRATEGIES: Registry[Strategy] = Registry("label strategy")
STRATEGIES.register(
    "idlg", "iDLG (Zhao et al. 2020): B=1, the one class whose gradient is negative"
)(idlg)
STRATEGIES.register(
    "yin", "GradInversion (Yin et al. 2021): B most negative row minima; distinct labels only"
)(yin)
STRATEGIES.register(
    "llg", "LLG (Wainakh et al. 2022): greedy on weight-row sums, impact subtracted"
)(llg)
STRATEGIES.register("bias-corrected", "n_c = B(p̄_c − ∇b_c), p̄ from the model on dummy inputs")(
    bias_corrected
)
STRATEGIES.register(
    "ilrg", "iLRG (Ma et al. 2023): per-class mean embeddings, integer least-squares counts"
)(ilrg)
STRATEGIES.register("auto", "idlg for B=1, bias-corrected for B>1 (best measured; docs/labels.md)")(
    auto
)


def recover_labels(
    observation: Observation, strategy: str = "auto", batch_size: int | None = None
) -> torch.Tensor:
    """Recovered label multiset (sorted int64 cpu tensor of length B) using a registered strategy.
    The batch size is `batch_size`, else the observation's, else estimated from the update."""
    fn = STRATEGIES.get(strategy)
    if batch_size is None:
        batch_size = batch_size_of(observation)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise GradinvError(f"batch size must be an integer >= 1, got {batch_size!r}")
    labels = fn(observation, batch_size).long().cpu()
    if labels.shape != (batch_size,):
        raise RuntimeError(
            f"strategy {strategy!r} returned {tuple(labels.shape)} labels for B={batch_size}"
        )
    return labels.sort().values


__all__ = [
    "STRATEGIES",
    "BatchSizeEstimate",
    "batch_size_of",
    "Strategy",
    "estimate_batch_size",
    "last_layer_signal",
    "recover_labels",
]
