"""Feature hashing (a count sketch): a fixed random linear map from a model's P update entries
to D buckets. Entry i goes to bucket h(i) with sign s(i) ∈ {−1, +1}; both come from a seeded
generator, so the same (P, D, seed) always gives the same map. Being linear, the sketch of a
batch-mean update is the mean of the per-sample sketches, and noise added before hashing stays
zero-mean after it."""

from __future__ import annotations

import torch

from ..errors import GradinvError


class CountSketch:
    """x (..., P) -> (..., D): out[..., h(i)] += s(i) · x[..., i]. D = 0 means no hashing
    (the identity on P entries)."""

    def __init__(self, size_in: int, size_out: int, seed: int = 0) -> None:
        if size_in < 1:
            raise GradinvError(f"sketch input size must be >= 1, got {size_in}")
        if size_out < 0:
            raise GradinvError(f"sketch size must be >= 0 (0: no hashing), got {size_out}")
        self.size_in, self.size_out, self.seed = int(size_in), int(size_out), int(seed)
        gen = torch.Generator().manual_seed(self.seed)
        if self.size_out:
            self.buckets = torch.randint(0, self.size_out, (self.size_in,), generator=gen)
            self.signs = torch.randint(0, 2, (self.size_in,), generator=gen).float() * 2 - 1
        else:
            self.buckets = torch.arange(self.size_in)
            self.signs = torch.ones(self.size_in)

    @property
    def dim(self) -> int:
        """Number of features the sketch produces."""
        return self.size_out or self.size_in

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size_in:
            raise GradinvError(f"sketch expects {self.size_in} entries, got {x.shape[-1]}")
        if not self.size_out:
            return x
        signs = self.signs.to(x.device, x.dtype)
        flat = (x * signs).reshape(-1, self.size_in)
        out = torch.zeros(flat.shape[0], self.size_out, dtype=x.dtype, device=x.device)
        out.index_add_(1, self.buckets.to(x.device), flat)
        return out.reshape(*x.shape[:-1], self.size_out)

    def bucket_sizes(self) -> torch.Tensor:
        """How many entries share each bucket (all ones without hashing)."""
        return torch.bincount(self.buckets, minlength=self.dim)
