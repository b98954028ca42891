"""Soteria (Sun et al., CVPR 2021): prune the last linear layer's weight gradient where the
representation feeding it reveals the most about the input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GradinvError
from ..fl.protocol import forward
from ..options import option
from ._layers import last_linear
from .base import ClientRound, Defense, Tensors, count, register

CHUNK = 64  # features differentiated together (batched backward); bounds memory at CHUNK·|x|


def feature_scores(round: ClientRound, layer: torch.nn.Module) -> torch.Tensor:
    """Per feature f of the input r of `layer`: Σ_i ‖∂r_if/∂x_i‖ / |r_if| over the batch.

    A feature that is exactly zero for a sample scores +inf for it (as 0/0 does not prune in the
    paper's code): its weight-gradient column carries nothing anyway."""
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    x = round.x.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            forward(round.model, round.params, round.buffers, x)
    finally:
        handle.remove()
    r = captured[-1]
    if r.ndim != 2:
        raise GradinvError(f"soteria expects (batch, features) input to the last linear layer, "
                           f"got {tuple(r.shape)}")  # fmt: skip
    b, d = r.shape
    scores = torch.zeros(d, dtype=torch.float64, device=r.device)
    for start in range(0, d, CHUNK):
        feats = torch.arange(start, min(start + CHUNK, d), device=r.device)
        # One batched backward per chunk: seed j selects feature feats[j] of every sample, so row
        # i of the result is ∂(Σ_k r_kf)/∂x_i = ∂r_if/∂x_i when samples do not interact; with
        # BatchNorm in train mode it keeps the cross-sample terms, as the paper's code does.
        seeds = torch.zeros(len(feats), b, d, dtype=r.dtype, device=r.device)
        seeds[torch.arange(len(feats)), :, feats] = 1
        (jac,) = torch.autograd.grad(r, x, seeds, retain_graph=True, is_grads_batched=True)
        norms = jac.flatten(2).norm(dim=2).double()  # (chunk, B)
        values = r[:, feats].detach().abs().T.double()  # (chunk, B)
        ratio = torch.where(values > 0, norms / values.clamp_min(1e-300), torch.inf)
        scores[feats] = ratio.sum(dim=1)
    return scores


@register
@dataclass
class Soteria(Defense):
    """Soteria: prune the last linear layer's weight-gradient columns of the least robust features.

    Zeroes the columns whose input features have the lowest Σ_i ‖∂r_f/∂x_i‖ / |r_f| (a fraction `ratio` of the columns)."""

    name = "soteria"
    ratio: float = option(0.8, "fraction of the last linear layer's input features pruned",
                          low=0, high=1)  # fmt: skip

    def apply(self, update: Tensors, round: ClientRound) -> Tensors:
        name, layer = last_linear(round.model, "soteria")
        key = f"{name}.weight" if name else "weight"
        if key not in update:
            raise GradinvError(f"soteria: the update has no {key!r} (is the last layer frozen?)")
        scores = feature_scores(round, layer)
        k = count(self.ratio, scores.numel())
        # Stable sort: equal scores prune the lower feature index first (deterministic).
        pruned = torch.sort(scores, stable=True).indices[:k]
        keep = torch.ones(scores.numel(), dtype=update[key].dtype, device=update[key].device)
        keep[pruned] = 0
        return {**update, key: update[key] * keep}

    def simulate(self, update: Tensors, observed: Tensors) -> Tensors:
        # The mask is visible: the zero columns of the observed last-layer weight gradient.
        key = _last_weight(observed)
        mask = (observed[key] != 0).any(dim=0).to(update[key].dtype)
        return {**update, key: update[key] * mask}

    def informative(self, observed: Tensors) -> Tensors | None:
        key = _last_weight(observed)
        out = {k: torch.ones_like(v, dtype=torch.bool) for k, v in observed.items()}
        out[key] = (observed[key] != 0).any(dim=0).expand_as(observed[key]).clone()
        return out


def _last_weight(update: Tensors) -> str:
    """Without the model, the last linear layer's weight is taken to be the last 2-D tensor of
    the update (parameter order), true for every built-in model."""
    names = [k for k, v in update.items() if v.ndim == 2]
    if not names:
        raise GradinvError("soteria: the update holds no 2-D (linear weight) tensor")
    return names[-1]
