"""The bias attack on a first linear layer (Phong et al. 2017; Geiping et al. 2020, "analytic")."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GradinvError
from ..fl import Observation
from ._closed_form import batch_size, first_linear, gradients, to_images
from .base import ATTACKS, Attack, Reconstruction


@ATTACKS.register(
    "bias", "bias attack: x = ∇W_i / ∇b_i on a first linear layer (exact for batch size 1)"
)
@dataclass
class BiasAttack(Attack):
    """Closed-form input recovery from a first linear layer z = W x + b: ∇W = ∇b·xᵀ for one
    sample, so x = ∇W_i / ∇b_i for any row with ∇b_i ≠ 0. The estimate is the least-squares
    combination of the `rows` rows with the largest |∇b_i| (exact to machine precision at B = 1).

    For B > 1 a row is a mixture of the samples that activate its neuron; a row whose ratio is
    shared by other rows (to `agreement`) comes from a single sample: those are returned first and
    counted as certified, the remaining images are the strongest uncertified ratios.

    Example::

        obs = observe(mlp4((3, 32, 32), 10), image, label)
        rec = BiasAttack().reconstruct(obs)
        print(evaluate(rec.images, image)["psnr"])  # > 100 dB in float64
    """

    name = "bias"
    contract_model = "mlp4"
    contract_model_options = {"width": 100}
    contract_options = {}
    contract_batch_size = 2
    rows: int = 256  # rows with the largest |∇b_i| used (B = 1) or clustered (B > 1)
    agreement: float = 1e-4  # relative distance under which two rows' ratios are one sample

    def check(self) -> None:
        if self.rows < 1:
            raise GradinvError(f"bias attack rows must be >= 1, got {self.rows}")
        if not 0 < self.agreement < 1:
            raise GradinvError(f"bias attack agreement must be in (0, 1), got {self.agreement}")

    def reconstruct(self, observation: Observation) -> Reconstruction:
        self.check()
        observation.validate()
        layer = first_linear(observation, "bias")
        grads = gradients(observation, "bias")
        g_w, g_b = grads[layer.weight].cpu(), grads[layer.bias].cpu()
        b_size = batch_size(observation)
        width = g_w.shape[0]
        if b_size > width:
            raise GradinvError(
                f"bias attack: batch size {b_size} exceeds the first layer's width {width}"
            )
        order = g_b.abs().argsort(descending=True)[: max(self.rows, b_size)]
        order = order[g_b[order].abs() > g_b.abs().max() * 1e-12]
        if len(order) == 0:
            raise GradinvError("bias attack: the first layer's bias gradient is zero")
        if b_size == 1:
            rows_b = g_b[order]
            x = (rows_b[:, None] * g_w[order]).sum(0) / rows_b.pow(2).sum()
            x = x[None]
            certified = [True]
        else:
            x, certified = self._isolate(g_w[order] / g_b[order, None], b_size)
        return Reconstruction(
            images=to_images(observation, x),
            info={
                "batch_size": b_size,
                "certified": certified,
                "certified_count": int(sum(certified)),
                "rows_used": int(len(order)),
            },
        )

    def _isolate(self, ratios: torch.Tensor, b_size: int) -> tuple[torch.Tensor, list[bool]]:
        """Group rows whose ratios coincide: each group of ≥ 2 rows is one isolated sample."""
        norms = ratios.norm(dim=1, keepdim=True).clamp_min(1e-300)
        dist = torch.cdist(ratios, ratios) / torch.minimum(norms, norms.T)
        close = dist < self.agreement
        taken = torch.zeros(len(ratios), dtype=torch.bool)
        isolated, spare = [], []
        for i in range(len(ratios)):
            if taken[i]:
                continue
            group = close[i] & ~taken
            taken |= group
            if int(group.sum()) >= 2:
                isolated.append(ratios[group].mean(0))
            else:
                spare.append(ratios[i])
        rows = (isolated + spare)[:b_size]
        while len(rows) < b_size:
            rows.append(torch.zeros_like(ratios[0]))
        certified = [i < len(isolated) for i in range(b_size)]
        return torch.stack(rows), certified
