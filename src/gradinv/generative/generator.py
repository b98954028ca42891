"""The generator contract every generative prior relies on.

x = G(z) = stages[N](...stages[0](z)), in [-1, 1] (an attack maps it to [0, 1] by (x + 1) / 2).
GIAS searches z, GIFD searches the input of a stage k (`features(z, k)` gives its start,
`from_stage(h, k)` finishes the image), GGL runs CMA-ES on z, and a deep image prior optimises the
weights of a freshly built (untrained) generator.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import GradinvError


class Generator(nn.Module):
    """Base class: subclasses set `latent_dim`, `output_shape` (C, H, W) and `stages`."""

    latent_dim: int
    output_shape: tuple[int, int, int]
    stages: nn.ModuleList | None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.from_stage(z, 0)

    @property
    def num_stages(self) -> int:
        return len(self._stages())

    def _stages(self) -> nn.ModuleList:
        stages = getattr(self, "stages", None)
        if stages is None:
            raise GradinvError(
                f"generator {type(self).__name__} has no `stages`: feature-domain search (GIFD) "
                "is unavailable; give the class an nn.ModuleList `stages` to enable it"
            )
        return stages

    def _check_stage(self, k: int) -> None:
        n = self.num_stages
        if not 0 <= k <= n:
            raise GradinvError(f"stage {k} out of range: this generator has stages 0..{n - 1}")

    def features(self, z: torch.Tensor, k: int) -> torch.Tensor:
        """The input of stage k for latent z (k = 0: z itself; k = num_stages: the image)."""
        self._check_stage(k)
        h = z
        for stage in self._stages()[:k]:
            h = stage(h)
        return h

    def from_stage(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Run stages k..N on h, the input of stage k: from_stage(features(z, k), k) == G(z)."""
        self._check_stage(k)
        for stage in self._stages()[k:]:
            h = stage(h)
        return h

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent vectors z ~ N(0, I), the training distribution of the built-in kinds."""
        p = next(self.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32
        return torch.randn(n, self.latent_dim, generator=generator, dtype=dtype)
