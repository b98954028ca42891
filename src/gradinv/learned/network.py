"""The inverter: an MLP from a (hashed, standardised) update to B images in [0, 1].

Encoding: each update entry is divided by its tensor's typical magnitude (so hashing does not let
the largest tensors drown the others), count-sketched to D features, and each feature
standardised — all fixed maps set from training updates before training. Trunk: Linear–ReLU per
hidden width (Wu et al. 2023). Heads:

* ``per-size``: one Linear–Sigmoid image head per trained batch size B and, with several sizes,
  a count head (logits over the trained sizes) for updates whose batch size is hidden;
* ``set``: one Linear–Sigmoid head with K = max(B) image slots and K "present" logits, trained
  by Hungarian matching of slots to the batch's images (unmatched slots: absent); the recovered B
  is the number of slots it calls present.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..errors import GradinvError
from .sketch import CountSketch

HEADS = ("per-size", "set")


@dataclass
class Output:
    """images (M, K, C, H, W) in [0, 1] (K = B, or the set head's slots); count_logits
    (M, len(batch_sizes)) of the per-size count head; present_logits (M, K) of the set head."""

    images: torch.Tensor
    count_logits: torch.Tensor | None = None
    present_logits: torch.Tensor | None = None


@dataclass
class Inversion:
    """One inverted update: images (B, C, H, W) and what the network says about B."""

    images: torch.Tensor
    network_batch_size: int
    facts: dict[str, Any] = field(default_factory=dict)


class Inverter(nn.Module):
    def __init__(
        self,
        size_in: int,
        image_shape: Sequence[int],
        batch_sizes: Sequence[int],
        hidden: Sequence[int] = (1000, 1000),
        sketch: int = 4096,
        sketch_seed: int = 0,
        head: str = "per-size",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise GradinvError(f"unknown inverter head {head!r}; choose from: {', '.join(HEADS)}")
        sizes = sorted({int(b) for b in batch_sizes})
        if not sizes or sizes[0] < 1:
            raise GradinvError(f"batch sizes must be integers >= 1, got {list(batch_sizes)}")
        self.image_shape = tuple(int(v) for v in image_shape)
        self.batch_sizes, self.head_kind = sizes, head
        self.sketch = CountSketch(size_in, sketch, sketch_seed)
        d = self.sketch.dim
        self.register_buffer("entry_scale", torch.ones(size_in))
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        layers: list[nn.Module] = []
        width = d
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        self.trunk = nn.Sequential(*layers)
        pixels = int(torch.Size(self.image_shape).numel())
        if head == "per-size":
            self.heads = nn.ModuleDict({str(b): nn.Linear(width, b * pixels) for b in sizes})
            self.count = nn.Linear(width, len(sizes)) if len(sizes) > 1 else None
        else:
            self.slots = nn.Linear(width, sizes[-1] * pixels)
            self.present = nn.Linear(width, sizes[-1])

    @property
    def max_batch(self) -> int:
        return self.batch_sizes[-1]

    def features(self, updates: torch.Tensor) -> torch.Tensor:
        """Flat updates (M, P) -> standardised hashed features (M, D)."""
        h = self.sketch(updates * self.entry_scale)
        return (h - self.feature_mean) / self.feature_std

    def forward(self, features: torch.Tensor, batch_size: int | None = None) -> Output:
        """The heads' outputs for `features` (M, D). The per-size heads need `batch_size` to
        pick the image head (None: the count logits only)."""
        z = self.trunk(features)
        m = features.shape[0]
        if self.head_kind == "set":
            images = torch.sigmoid(self.slots(z)).view(m, self.max_batch, *self.image_shape)
            return Output(images, present_logits=self.present(z))
        count = self.count(z) if self.count is not None else None
        if batch_size is None:
            return Output(z.new_zeros(m, 0, *self.image_shape), count_logits=count)
        if str(batch_size) not in self.heads:
            raise GradinvError(
                f"the inverter was trained for batch sizes {self.batch_sizes}, not {batch_size}"
            )
        images = torch.sigmoid(self.heads[str(batch_size)](z))
        return Output(images.view(m, batch_size, *self.image_shape), count_logits=count)

    @torch.no_grad()
    def invert(self, updates: torch.Tensor, batch_size: int | None = None) -> list[Inversion]:
        """Flat updates (M, P) -> one Inversion each. B is `batch_size` when given, else the
        network's own count: the count head's most probable size, or the set head's number of
        present slots."""
        z = self.trunk(self.features(updates.to(self.feature_mean.dtype)))
        m = len(z)
        if self.head_kind == "set":
            p = torch.sigmoid(self.present(z))
            slots = torch.sigmoid(self.slots(z)).view(m, self.max_batch, *self.image_shape)
            out = []
            for i in range(m):
                count = max(1, int((p[i] > 0.5).sum()))
                b = self._check(batch_size or count)
                keep = torch.argsort(p[i], descending=True, stable=True)[:b].sort().values
                out.append(Inversion(slots[i, keep], count,
                                     {"present_probabilities": _rounded(p[i])}))  # fmt: skip
            return out
        counts, facts = [self.batch_sizes[0]] * m, [{} for _ in range(m)]
        if self.count is not None:
            prob = torch.softmax(self.count(z), 1)
            counts = [self.batch_sizes[int(k)] for k in prob.argmax(1)]
            names = [str(s) for s in self.batch_sizes]
            facts = [{"count_probabilities": dict(zip(names, _rounded(p), strict=True))}
                     for p in prob]  # fmt: skip
        images: dict[int, torch.Tensor] = {}
        out = []
        for i in range(m):
            b = self._check(batch_size or counts[i])
            if b not in images:  # one head call per size for the whole set of updates
                images[b] = torch.sigmoid(self.heads[str(b)](z)).view(m, b, *self.image_shape)
            out.append(Inversion(images[b][i], counts[i], facts[i]))
        return out

    def _check(self, b: int) -> int:
        if self.head_kind == "set" and not 1 <= b <= self.max_batch:
            raise GradinvError(f"the inverter has {self.max_batch} image slots, not {b}")
        if self.head_kind == "per-size" and b not in self.batch_sizes:
            raise GradinvError(
                f"the inverter was trained for batch sizes {self.batch_sizes}, not {b}"
            )
        return b


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(float(v), 4) for v in values]
