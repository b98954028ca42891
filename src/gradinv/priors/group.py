from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from ..errors import GradinvError
from .base import Prior


@dataclass
class GroupConsistency(Prior):
    """Group consistency (GradInversion, Yin et al. CVPR 2021): `seeds` dummy batches from different
    random initialisations are optimised together; each is pulled toward their consensus x̄ (the
    mean after registering the members' images to the first member's by a Hungarian assignment on
    pairwise MSE): penalty (1/G) Σ_g (1/B) Σ_k ‖x̂_gk − x̄_k‖², x̄ held fixed. The output is x̄.

    Example::

        attack = InvertingGradients(priors=(("tv", 1e-2), ("group", 0.01)))  # 4 seeds jointly
        rec = attack.reconstruct(obs)                 # rec.images: the consensus of the 4
        print(evaluate(rec.images, images)["psnr"])
    """

    seeds: int = 4
    register: bool = True  # align the members' images before averaging
    same_init: bool = False  # all members start identically (a sanity check: equals one run)

    joint = True

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise GradinvError(f"prior 'group': seeds must be >= 1, got {self.seeds}")

    def group_size(self) -> int:
        return self.seeds

    def initial(self, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        if not self.same_init:
            return x
        return x[:batch_size].repeat(self.seeds, *([1] * (x.ndim - 1)))

    def aligned(self, images: torch.Tensor) -> torch.Tensor:
        """(G, B, C, H, W): each member's images reordered to correspond to the first member's."""
        members = images.reshape(self.seeds, -1, *images.shape[1:])
        if not self.register or members.shape[1] == 1:
            return members
        ref = members[0].detach().flatten(1).double()
        out = [members[0]]
        for g in range(1, self.seeds):
            cost = torch.cdist(ref, members[g].detach().flatten(1).double()).pow(2)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            order = torch.as_tensor(cols[rows.argsort()], device=images.device)
            out.append(members[g][order])
        return torch.stack(out)

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        """images: (K, G·B, C, H, W), the whole group of each of K trials."""
        values = []
        for trial in images:
            members = self.aligned(trial)
            consensus = members.detach().mean(dim=0, keepdim=True)
            values.append((members - consensus).pow(2).flatten(2).sum(2).mean())
        return torch.stack(values)

    def fuse(self, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        return self.aligned(images).mean(dim=0)
