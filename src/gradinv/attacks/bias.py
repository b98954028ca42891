"""The bias attack on a first linear layer (Phong et al. 2017; Geiping et al. 2020, "analytic")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import GradinvError
from ..fl import Observation
from ..options import option
from ._certify import Certifier, couples_samples, tolerance_for
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

    For B > 1 a row is a mixture of the samples that activate its neuron; rows whose ratios agree
    (to `agreement`) are candidates for a single sample. Agreement alone is no certificate: rows
    activated only by two near-duplicate samples give mixtures that agree as well. A candidate is
    certified only when its own per-sample gradient (label fitted) is exactly a piece of the
    update (see `_certify`: subtracting it lowers the gradient's rank by one, jointly for all
    certified samples, to a relative residual within `certify_tolerance`). Certified samples come first, then the other
    candidates and the strongest remaining ratios, uncertified.

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
    rows: int = option(256, "rows with the largest |∇b_i| used (B = 1) or grouped (B > 1)", low=1)
    agreement: float = option(
        1e-4, "relative distance under which two rows' ratios are one candidate sample",
        low=0, high=1, low_open=True, high_open=True,
    )  # fmt: skip
    certify_tolerance: float = option(
        0.0, "largest residual of a certified sample's own gradient, relative to it "
        "(0: 100 × the update's unit roundoff, at least 1e-9)", low=0, high=1, high_open=True,
    )  # fmt: skip

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
            candidates = [((rows_b[:, None] * g_w[order]).sum(0) / rows_b.pow(2).sum()).numpy()]
            spare: list[torch.Tensor] = []
        else:
            candidates, spare = self._isolate(g_w[order] / g_b[order, None])
        certified: list[np.ndarray] = []
        if not couples_samples(observation):  # train-mode BatchNorm: no per-sample gradient
            certifier = Certifier.for_layer(
                observation, layer, grads, b_size,
                tolerance_for(observation, self.certify_tolerance), self.seed,
            )  # fmt: skip
            certified = [c.x for c in certifier.certify([], candidates)[0]]
        rest = [x for x in candidates if not any(x is c for c in certified)]
        rows = [torch.from_numpy(x) for x in certified + rest] + spare
        rows = rows[:b_size] + [torch.zeros_like(g_w[0])] * max(0, b_size - len(rows))
        count = len(certified)
        info = {
            "batch_size": b_size,
            "certified": [i < count for i in range(b_size)],
            "certified_count": count,
            "rows_used": int(len(order)),
        }
        if count < b_size:
            info["warning"] = (
                f"bias: {count} of {b_size} samples certified; the others are unverified guesses"
            )
        return Reconstruction(images=to_images(observation, torch.stack(rows)), info=info)

    def _isolate(self, ratios: torch.Tensor) -> tuple[list[np.ndarray], list[torch.Tensor]]:
        """Group rows whose ratios coincide: each group of ≥ 2 rows is a candidate sample (its
        mean); single rows are spare guesses."""
        norms = ratios.norm(dim=1, keepdim=True).clamp_min(1e-300)
        dist = torch.cdist(ratios, ratios) / torch.minimum(norms, norms.T)
        close = dist < self.agreement
        taken = torch.zeros(len(ratios), dtype=torch.bool)
        groups, spare = [], []
        for i in range(len(ratios)):
            if taken[i]:
                continue
            group = close[i] & ~taken
            taken |= group
            if int(group.sum()) >= 2:
                groups.append(ratios[group].mean(0).numpy())
            else:
                spare.append(ratios[i])
        return groups, spare
