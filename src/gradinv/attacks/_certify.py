"""Certificates for closed-form batch reconstructions (spear; bias with B > 1).

The test. For a linear layer z = W h + b the mean-loss gradient is G = Σ_k c_k r_kᵀ (c_k =
∂ℓ_k/∂z / B, r_k = h_k): rank B. For a candidate x̂ we run the model on it once per label, read its
own factors (ĉ, r̂) and measure how far G − ĉ r̂ᵀ is from rank B − 1: its B-th singular value,
computed exactly in the span of G's rank-B part and the factors (a (B+1)² matrix, no sketch). A
sample is certified when, for its best label, that residual is at most `margin` times the update's
noise floor σ_{B+1}(G) (the rounding the observation carries) and at most `tolerance` relative to
ĉ r̂ᵀ (which binds only for a noisy update), on the first linear layer and on the next one, and
when the whole certified set S lowers the rank by |S| jointly (a sample found twice counts once).

Why a ReLU-pattern test is no certificate. Samples whose first-layer ReLU patterns coincide (flat
or near-duplicate images) make every affine combination of them satisfy "W x + b = s·a on the
support, ≤ 0 elsewhere" exactly, and the cone search returns exactly such extrapolations as
extreme rays (measured: one near-duplicate pair in B = 64 gave 52 certified images at 10–15 dB).
Bias-attack rows activated only by a near-duplicate pair agree with each other the same way.

Why the gradient test holds, and how far. A true sample with its label leaves rank B − 1 plus
rounding. A wrong x̂ lowers the rank only if its own gradient is, to rounding, the piece of G that
some combination of true samples contributes; the gradient goes nonlinearly through every layer
and the softmax, so this needs a coincidence. The weakest case is the one above: x̂ = x₁ + s(x₂ − x₁)
for two samples with the same ReLU patterns in every layer. The network is then affine between
them and only the softmax's curvature tells x̂ from a sample: the residual grows like the square of
the image error (measured on mlp4: errors of 66 dB leave ~150× the floor, 56 dB ~60 000×). The
default margin (100) sits below what a 60 dB error leaves there and above what float32 rounding
leaves on true samples (at most 93× measured, B = 64). So the certificate is exact to the precision
of the observation, not a proof for every network: a softmax that is flat around a near-duplicate
pair (saturated, or nearly linear) sees mixtures less, and an update that two batches produce to
rounding error determines neither. Per-sample gradients do not exist under train-mode BatchNorm
(`couples_samples`): the attacks certify nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fl import Observation
from ..fl.protocol import forward


@dataclass
class _Layer:
    """A checked linear layer: G's rank-B part u·core·qᵀ, its norm and its rounding noise."""

    u: np.ndarray  # m × B column basis
    q: np.ndarray  # n × B row basis
    core: np.ndarray  # B × B
    norm: float  # σ_1(G)
    floor: float  # σ_{B+1}(G) / σ_1(G): what rounding left beyond rank B


@dataclass
class Candidate:
    """A sample with its fitted label and its per-layer gradient factors (columns, rows)."""

    x: np.ndarray
    label: int
    cols: list[np.ndarray]
    rows: list[np.ndarray]
    noise: float  # its own rank-drop residual in units of the update's noise floor, worst layer
    residual: float  # the same relative to its own gradient's norm


def _low_rank(g: np.ndarray, rank: int, seed: int) -> _Layer:
    """Randomised SVD of a numerically rank-`rank` matrix (cheap for a wide gradient)."""
    rng = np.random.default_rng(seed)
    k = min(rank + 10, *g.shape)
    q, _ = np.linalg.qr(g.T @ rng.standard_normal((g.shape[0], k)))
    u_small, sv, vh = np.linalg.svd(g @ q, full_matrices=False)
    top = float(sv[0]) if len(sv) and sv[0] > 0 else 1.0
    floor = float(sv[rank]) / top if len(sv) > rank else 0.0
    floor = max(floor, float(np.finfo(np.float64).eps))  # an exactly rank-B matrix: float64 noise
    u, v = u_small[:, :rank], q @ vh[:rank].T
    return _Layer(u, v, np.diag(sv[:rank]), top, floor)


def couples_samples(observation: Observation) -> bool:
    """Train-mode BatchNorm mixes the batch: a sample's gradient is then not its own."""
    return observation.train_mode and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in observation.model.modules()
    )


class Certifier:
    """Fits labels to candidate samples and certifies the ones whose own gradients the observed
    update contains (see the module docstring). `weights`: the checked linear layers' weight
    names (each must see a flat input). A certified sample's rank-drop residual is at most
    `margin` times the update's noise floor (σ_{B+1}/σ_1: the rounding the observation carries)
    and at most `tolerance` relative to its own gradient (which bounds it when the update is
    noisy); a certified set of n samples, jointly, at most √n·`margin` times the floor."""

    def __init__(
        self, observation: Observation, weights: list[str], grads: dict[str, torch.Tensor],
        b_size: int, tolerance: float, margin: float, seed: int = 0,
    ) -> None:  # fmt: skip
        self.obs, self.b_size = observation, b_size
        self.tolerance, self.margin = tolerance, margin
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

    def certify(
        self, accepted: list[Candidate], xs: list[np.ndarray]
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Extend the certified set `accepted` by those of the candidates `xs` that pass on their
        own and jointly with it (best first). Returns (newly certified, rejected)."""
        cands = sorted((self.candidate(x) for x in xs), key=lambda c: c.noise)
        good = [c for c in cands if c.noise <= self.margin and c.residual <= self.tolerance]
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
            drops = [
                _drop(layer, ci, r[:, None])
                for layer, ci, r in zip(self.layers, c, rows, strict=True)
            ]
            noise = max(d[0] for d in drops)
            if best is None or noise < best.noise:
                residual = max(d[1] for d in drops)
                best = Candidate(x, label, [ci[:, 0] for ci in c], rows, noise, residual)
        assert best is not None
        return best

    def _joint_ok(self, group: list[Candidate]) -> bool:
        """The group's joint rank drop, every layer (catches e.g. one sample found twice)."""
        for i, layer in enumerate(self.layers):
            cols = np.stack([c.cols[i] for c in group], axis=1)
            rows = np.stack([c.rows[i] for c in group], axis=1)
            noise, residual = _drop(layer, cols, rows)
            if noise > self.margin * len(group) ** 0.5 or residual > self.tolerance:
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


def _drop(layer: _Layer, cols: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """σ_{B−n+1}(G − cols·rowsᵀ) for n = cols.shape[1], in units of G's noise floor and relative
    to ‖cols·rowsᵀ‖_F. Computed exactly in the span of G's rank-B part and the factors: a block
    matrix of size B + n."""
    b, n = layer.core.shape[0], cols.shape[1]
    if n > b:
        return float("inf"), float("inf")
    a = layer.u.T @ cols
    tc = np.linalg.qr(cols - layer.u @ a, mode="r")  # coordinates of the parts outside u, q
    r = layer.q.T @ rows
    tr = np.linalg.qr(rows - layer.q @ r, mode="r")
    small = np.zeros((b + n, b + n))
    small[:b, :b] = layer.core
    small -= np.vstack([a, tc]) @ np.vstack([r, tr]).T
    left = float(np.linalg.svd(small, compute_uv=False)[b - n]) / layer.norm
    own = float(abs((cols.T @ cols * (rows.T @ rows)).sum())) ** 0.5 / layer.norm
    return left / layer.floor, left / max(own, 1e-300)
