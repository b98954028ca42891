"""Certificates for closed-form batch reconstructions (spear; bias with B > 1).

The test. For a linear layer z = W h + b the mean-loss gradient is G = Σ_k c_k r_kᵀ (c_k =
∂ℓ_k/∂z / B, r_k = h_k): rank B. For a candidate x̂ we run the model on it once per label, read its
own factors (ĉ, r̂) and measure how far G − ĉ r̂ᵀ is from rank B − 1: its B-th singular value
relative to ‖ĉ r̂ᵀ‖, computed exactly in the span of G's rank-B part and the factors (a (B+1)²
matrix, no sketch). A sample is certified when, for its best label, this residual is within the
tolerance on the first linear layer and on the next one, and when the certified set S lowers the
rank by |S| jointly to the same tolerance (a sample found twice counts once). The default
tolerance is 100 × the unit roundoff of the update's dtype (6e-6 for float32), at least 1e-9.

Why a ReLU-pattern test is no certificate. Samples whose first-layer ReLU patterns coincide (flat
or near-duplicate images) make every affine combination of them satisfy "W x + b = s·a on the
support, ≤ 0 elsewhere" exactly, and the cone search returns exactly such extrapolations as
extreme rays (measured: one near-duplicate pair in B = 64 gave 52 certified images at 10–15 dB).
Bias-attack rows activated only by a near-duplicate pair agree with each other the same way.

Why the gradient test holds, and how far. A true sample with its label leaves rank B − 1 plus the
observation's rounding (measured in float32: ~3e-7 for exact images, ≤ 5e-6 for the samples
spear finds at B = 64; in float64 ~1e-13). A wrong x̂ lowers the rank only if its own gradient
is, to that precision, the piece of G that some combination of true samples contributes; the
gradient goes nonlinearly through every layer and the softmax, so this needs a coincidence. The
weakest case is the one above, x̂ = x₁ + s(x₂ − x₁) for two samples with the same ReLU patterns
in every layer: the network is affine between them and only the softmax's curvature tells x̂ from
a sample, so the residual grows like the square of the image error (measured on mlp4: mixtures
66 dB off leave 2.5–6e-6, hence ~1e-5 at 60 dB; once a ReLU switches, 56 dB off leave 1.2e-3).
The float32 default sits just under that; the float64 one four orders under. The certificate is
thus exact to the precision of the observation, not a proof for every network: a softmax that is
flat around a near-duplicate pair (saturated, or nearly linear) sees mixtures less, and an update
that two batches produce to rounding error determines neither. Per-sample gradients do not exist
under train-mode BatchNorm (`couples_samples`): the attacks certify nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fl import Observation
from ..fl.protocol import forward


@dataclass
class _Layer:
    """A checked linear layer: G's rank-B part u·core·qᵀ and its norm σ_1."""

    u: np.ndarray  # m × B column basis
    q: np.ndarray  # n × B row basis
    core: np.ndarray  # B × B
    norm: float  # σ_1(G)


@dataclass
class Candidate:
    """A sample with its fitted label and its per-layer gradient factors (columns, rows)."""

    x: np.ndarray
    label: int
    cols: list[np.ndarray]
    rows: list[np.ndarray]
    residual: float  # its own rank-drop residual relative to its gradient's norm, worst layer


def _low_rank(g: np.ndarray, rank: int, seed: int) -> _Layer:
    """Randomised SVD of a numerically rank-`rank` matrix (cheap for a wide gradient)."""
    rng = np.random.default_rng(seed)
    k = min(rank + 10, *g.shape)
    q, _ = np.linalg.qr(g.T @ rng.standard_normal((g.shape[0], k)))
    u_small, sv, vh = np.linalg.svd(g @ q, full_matrices=False)
    top = float(sv[0]) if len(sv) and sv[0] > 0 else 1.0
    u, v = u_small[:, :rank], q @ vh[:rank].T
    return _Layer(u, v, np.diag(sv[:rank]), top)


def tolerance_for(observation: Observation, tolerance: float) -> float:
    """`tolerance`, or for 0: 100 × the unit roundoff of the update's dtype (6e-6 for float32),
    at least 1e-9 (in float64 the search's own solves, not the data, limit the precision)."""
    if tolerance > 0:
        return tolerance
    dtype = next(iter(observation.update.values())).dtype
    return max(100 * float(torch.finfo(dtype).eps) / 2, 1e-9)


def couples_samples(observation: Observation) -> bool:
    """Train-mode BatchNorm mixes the batch: a sample's gradient is then not its own."""
    return observation.train_mode and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in observation.model.modules()
    )


class Certifier:
    """Fits labels to candidate samples and certifies the ones whose own gradients the observed
    update contains (see the module docstring). `weights`: the checked linear layers' weight
    names (each must see a flat input); `tolerance`: the largest rank-drop residual of a
    certified sample relative to its own gradient (and of a certified set, jointly)."""

    def __init__(
        self, observation: Observation, weights: list[str], grads: dict[str, torch.Tensor],
        b_size: int, tolerance: float, seed: int = 0,
    ) -> None:  # fmt: skip
        self.obs, self.b_size, self.tolerance = observation, b_size, tolerance
        self.modules = [observation.model.get_submodule(w.rpartition(".")[0]) for w in weights]
        self.layers = [
            _low_rank(grads[w].detach().double().cpu().numpy(), b_size, seed) for w in weights
        ]
        self.params = {
            k: v.detach().double().cpu().requires_grad_(True)
            for k, v in observation.parameters.items()
        }
        self.buffers = {
            k: (v.double() if v.is_floating_point() else v).cpu()
            for k, v in observation.buffers.items()
        }

    @classmethod
    def for_layer(
        cls, observation: Observation, layer: Any, grads: dict[str, torch.Tensor], b_size: int,
        tolerance: float, seed: int = 0,
    ) -> Certifier:  # fmt: skip
        """The certifier of a closed form on a first linear layer: it checks that layer's weight
        and, when the next layer is linear too, that one's (`layer.weight`, `layer.next_weight`)."""
        weights = [layer.weight] + ([layer.next_weight] if layer.next_weight else [])
        return cls(observation, weights, grads, b_size, tolerance, seed)

    def certify(
        self, accepted: list[Candidate], xs: list[np.ndarray]
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Extend the certified set `accepted` by those of the candidates `xs` that pass on their
        own and jointly with it (best first). Returns (newly certified, rejected)."""
        cands = sorted((self.candidate(x) for x in xs), key=lambda c: c.residual)
        good = [c for c in cands if c.residual <= self.tolerance]
        if good and self._joint_ok([*accepted, *good]):
            return good, cands[len(good) :]  # the usual case: one joint test
        new: list[Candidate] = []
        for cand in good:  # some candidates conflict (e.g. one sample found twice): one by one
            if self._joint_ok([*accepted, *new, cand]):
                new.append(cand)
        return new, [c for c in cands if not any(c is n for n in new)]

    def candidate(self, x: np.ndarray) -> Candidate:
        """The candidate with the label whose gradient the update contains best."""
        cols, rows = self._factors(x)
        best = None
        for label in range(self.obs.num_classes):
            c = [col[label][:, None] for col in cols]
            residual = max(
                _drop(layer, ci, r[:, None])
                for layer, ci, r in zip(self.layers, c, rows, strict=True)
            )
            if best is None or residual < best.residual:
                best = Candidate(x, label, [ci[:, 0] for ci in c], rows, residual)
        assert best is not None
        return best

    def _joint_ok(self, group: list[Candidate]) -> bool:
        """The group's joint rank drop, every layer (catches e.g. one sample found twice)."""
        for i, layer in enumerate(self.layers):
            cols = np.stack([c.cols[i] for c in group], axis=1)
            rows = np.stack([c.rows[i] for c in group], axis=1)
            if _drop(layer, cols, rows) > self.tolerance:
                return False
        return True

    def contribution(self, cand: Candidate) -> dict[str, torch.Tensor]:
        """The candidate's share (1/B)·∇ℓ(x, label) of the mean-loss gradient, every parameter."""
        logits = self._forward(torch.from_numpy(cand.x).reshape(1, *self.obs.input_shape))
        loss = F.cross_entropy(logits, torch.tensor([cand.label])) / self.b_size
        names = list(self.params)
        grads = torch.autograd.grad(loss, [self.params[n] for n in names], allow_unused=True)
        return {
            n: (g if g is not None else torch.zeros_like(self.params[n])).detach()
            for n, g in zip(names, grads, strict=True)
        }

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        model, was_training = self.obs.model, self.obs.model.training
        model.train(self.obs.train_mode)
        try:
            return forward(model, self.params, self.buffers, x)
        finally:
            model.train(was_training)

    def _factors(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per checked layer: ∂ℓ/∂z / B for every label (C × m) and the layer's input (n): one
        forward pass of C copies of x, copy c with label c."""
        obs, n_cls = self.obs, self.obs.num_classes
        inp = torch.from_numpy(x).reshape(1, *obs.input_shape).expand(n_cls, *obs.input_shape)
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        hooks = [
            m.register_forward_hook(lambda _m, i, o: seen.append((i[0], o))) for m in self.modules
        ]
        try:
            logits = self._forward(inp.clone())
        finally:
            for h in hooks:
                h.remove()
        seen = seen[: len(self.modules)]
        loss = F.cross_entropy(logits, torch.arange(n_cls), reduction="sum") / self.b_size
        grads = torch.autograd.grad(loss, [o for _, o in seen])
        cols = [g.detach().reshape(n_cls, -1).numpy() for g in grads]
        rows = [i.detach()[0].reshape(-1).numpy() for i, _ in seen]
        return cols, rows


def _drop(layer: _Layer, cols: np.ndarray, rows: np.ndarray) -> float:
    """σ_{B−n+1}(G − cols·rowsᵀ) / ‖cols·rowsᵀ‖_F for n = cols.shape[1]: what is left of rank
    B − n, relative to what was subtracted. Computed exactly in the span of G's rank-B part and
    the factors: a block matrix of size B + n."""
    b, n = layer.core.shape[0], cols.shape[1]
    if n > b:
        return float("inf")
    a = layer.u.T @ cols
    tc = np.linalg.qr(cols - layer.u @ a, mode="r")  # coordinates of the parts outside u, q
    r = layer.q.T @ rows
    tr = np.linalg.qr(rows - layer.q @ r, mode="r")
    small = np.zeros((b + n, b + n))
    small[:b, :b] = layer.core
    small -= np.vstack([a, tc]) @ np.vstack([r, tr]).T
    left = float(np.linalg.svd(small, compute_uv=False)[b - n])
    own = float(abs((cols.T @ cols * (rows.T @ rows)).sum())) ** 0.5  # ‖Σ c_k r_kᵀ‖_F
    return left / max(own, 1e-300)
