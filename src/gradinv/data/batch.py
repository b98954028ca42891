"""Draw a client's private batch with a controlled label composition."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GradinvError
from .dataset import ImageDataset

COMPOSITIONS = {
    "unique": "all labels distinct",
    "random": "images drawn uniformly at random",
    "same": "one label for the whole batch",
    "repeat:K": "each label exactly K times (B divisible by K)",
}


def _parse(composition: str, batch_size: int) -> tuple[str, int]:
    if composition.startswith("repeat:"):
        try:
            k = int(composition.split(":", 1)[1])
        except ValueError:
            raise GradinvError(f"composition {composition!r}: K must be an integer") from None
        if k < 1 or batch_size % k:
            raise GradinvError(
                f"composition {composition!r}: batch size {batch_size} not divisible by K"
            )
        return "repeat", k
    if composition not in ("unique", "random", "same"):
        raise GradinvError(
            f"unknown composition {composition!r}; choose from: unique, random, same, repeat:K"
        )
    return composition, {"unique": 1, "same": batch_size, "random": 0}[composition]


def batch_indices(
    dataset: ImageDataset, batch_size: int, composition: str = "random", seed: int = 0
) -> np.ndarray:
    """Indices of a batch; impossible requests are a GradinvError naming the limit."""
    if batch_size < 1:
        raise GradinvError(f"batch size must be at least 1, got {batch_size}")
    kind, k = _parse(composition, batch_size)
    rng = np.random.default_rng(seed)
    labels = dataset.labels
    if kind == "random":
        if batch_size > len(labels):
            raise GradinvError(
                f"batch size {batch_size} exceeds the dataset's {len(labels)} images"
            )
        return rng.choice(len(labels), size=batch_size, replace=False)
    per_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    n_labels = batch_size // k
    eligible = [c for c, idx in per_class.items() if len(idx) >= k]
    if n_labels > len(eligible):
        raise GradinvError(
            f"composition {composition!r} with batch size {batch_size} needs {n_labels} classes "
            f"with {k} images each; dataset {dataset.spec!r} has {len(eligible)}"
        )
    chosen = rng.choice(eligible, size=n_labels, replace=False)
    picks = [rng.choice(per_class[c], size=k, replace=False) for c in chosen]
    return rng.permutation(np.concatenate(picks))


def sample_batch(
    dataset: ImageDataset,
    batch_size: int,
    composition: str = "random",
    seed: int = 0,
    image_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, S, S) in [0,1] and int64 labels (B,)."""
    idx = batch_indices(dataset, batch_size, composition, seed)
    return dataset.load(idx.tolist(), image_size), torch.as_tensor(dataset.labels[idx])
