"""Exact batch inversion of a linear+ReLU first layer (SPEAR, Dimitrov et al., NeurIPS 2024),
with a polynomial-time search for the sparse directions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from scipy.optimize import linprog

from ..errors import GradinvError
from ..fl import Observation
from ..fl.protocol import forward, loss_fn
from ._closed_form import (
    batch_size,
    first_linear,
    gradients,
    row_basis,
    row_basis_noise,
    to_images,
)
from .base import ATTACKS, Attack, Reconstruction

METHODS = ("auto", "cone", "sampling")


@ATTACKS.register(
    "spear", "SPEAR (Dimitrov et al. 2024): exact batch inversion of a linear+ReLU first layer"
)
@dataclass
class Spear(Attack):
    """Exact inversion of a whole batch from the gradient of a first linear layer followed by ReLU,
    independent of the labels (repeated labels are no harder).

    With Z = W X + b, G_W = D Xᵀ has rank B: every sample lies in the B-dimensional row space R of
    G_W, and ReLU zeroes each sample's column of D = ∂L/∂Z where it is inactive. Two searches for
    the sparse directions:

    - ``cone`` (used when a linear layer reads the ReLU outputs, e.g. mlp4): the next layer's weight
      gradient has the ReLU outputs a_k ≥ 0 as its row space V, so every a_k is an extreme ray of
      the cone {V c ≥ 0} with ~50 % zeros. Linear programs over that cone (random, then targeted at
      neurons no found sample activates) land on those rays; each ray's support fixes its sample:
      W x + b = s·a on the active neurons, x ∈ R, a (B+1)-unknown least-squares problem.
    - ``sampling`` (the published scheme, exponential in B): B−1 random rows of L (G_W = L R) span
      the hyperplane orthogonal to a column q of Q (D = L Q) when one sample is inactive on all of
      them; refined by trimmed least squares. Scales from L Q s = G_b, then Xᵀ = (Q diag s)⁻¹ R.

    Every sample is certified: the ReLU pattern of W x + b must equal the support of its column of D
    (resp. of a_k) and the linear system must be solved to numerical precision.

    Example::

        obs = observe(mlp4((3, 32, 32), 10), images, labels)
        rec = Spear().reconstruct(obs)
        print(rec.info["certified_count"], evaluate(rec.images, images)["psnr"])
    """

    name = "spear"
    contract_model = "mlp4"
    contract_model_options = {"width": 100}
    contract_options = {}
    contract_batch_size = 4
    method: str = "auto"  # auto | cone | sampling
    max_programs: int = 0  # cone: linear programs to solve (0: 12·B + 40)
    max_samples: int = 4000  # sampling: draws of B−1 rows
    tolerance: float = 0.0  # relative zero threshold (0: 1e-5 for float32, 1e-9 for float64)

    def check(self) -> None:
        if self.method not in METHODS:
            raise GradinvError(f"spear method {self.method!r}; choose from: {', '.join(METHODS)}")
        if self.max_programs < 0 or self.max_samples < 1:
            raise GradinvError("spear needs max_programs >= 0 and max_samples >= 1")
        if self.tolerance < 0:
            raise GradinvError(f"spear tolerance must be >= 0, got {self.tolerance}")

    def reconstruct(self, observation: Observation) -> Reconstruction:
        self.check()
        observation.validate()
        layer = first_linear(observation, "spear")
        if not isinstance(layer.activation, nn.ReLU):
            act = type(layer.activation).__name__ if layer.activation is not None else "nothing"
            raise GradinvError(
                f"spear needs a ReLU right after the first linear layer; this model applies {act}"
            )
        grads = gradients(observation, "spear")
        b_size = batch_size(observation)
        weight = observation.parameters[layer.weight].detach().double().cpu()
        bias = observation.parameters[layer.bias].detach().double().cpu()
        width, dim = weight.shape
        if b_size > min(width, dim):
            raise GradinvError(
                f"spear: batch size {b_size} exceeds the first layer's width {width} / input "
                f"dimension {dim}; the gradient cannot separate more samples than that"
            )
        g_w, g_b = grads[layer.weight].cpu(), grads[layer.bias].cpu()
        if not g_w.abs().max() > 0:
            raise GradinvError("spear: the first layer's gradient is zero; nothing to invert")
        tol = self.tolerance or (1e-5 if observation.dtype == torch.float32 else 1e-9)
        method = self.method
        if method == "auto":
            method = "cone" if layer.next_weight is not None else "sampling"
        if method == "cone":
            if layer.next_weight is None:
                raise GradinvError(
                    "spear method 'cone' needs a linear layer reading the ReLU outputs; "
                    "use method=sampling"
                )
            solver = _Cone(observation, layer, grads, b_size, tol, self.seed)
            budget = self.max_programs or 12 * b_size + 40
        else:
            basis = row_basis(g_w, b_size, self.seed)  # B × d
            solver = _Sampling(weight, bias, basis, g_w, g_b, b_size, tol)
            budget = self.max_samples
        x, certified, tries = solver.run(np.random.default_rng(self.seed), budget)
        return Reconstruction(
            images=to_images(observation, torch.from_numpy(x)),
            info={
                "method": method,
                "batch_size": b_size,
                "certified": [bool(c) for c in certified],
                "certified_count": int(sum(certified)),
                "tries": tries,
                **solver.details(),
            },
        )


def _support_solve(
    m: np.ndarray, bias: np.ndarray, a: np.ndarray, tol: float
) -> tuple[np.ndarray, bool]:
    """Given a sample's ReLU output a (up to scale) on the first layer, find p with
    M p + b = s·a on the active neurons; certified when the residual vanishes and the pattern of
    M p + b equals the support of a."""
    active = a > tol * a.max()
    system = np.concatenate([m[active], -a[active, None]], axis=1)
    sol, *_ = np.linalg.lstsq(system, -bias[active], rcond=None)
    p, s = sol[:-1], sol[-1]
    z = m @ p + bias
    scale = max(np.abs(z).max(), 1e-300)
    residual = np.abs(system @ sol + bias[active]).max() / scale
    ok = bool(s > 0 and residual < 100 * tol and not (z[~active] > 100 * tol * scale).any())
    return p, ok


class _Cone:
    """Extreme rays of {V c ≥ 0} (V: row space of the next layer's weight gradient), with peeling:
    found samples' own gradients (label fitted) are subtracted and the search restarts on the
    remaining, smaller batch."""

    def __init__(self, observation, layer, grads, b_size, tol, seed):  # noqa: ANN001
        self.obs, self.layer = observation, layer
        self.grads = {k: v.cpu() for k, v in grads.items()}
        self.weight = observation.parameters[layer.weight].detach().double().cpu().numpy()
        self.bias = observation.parameters[layer.bias].detach().double().cpu().numpy()
        self.b_size, self.tol, self.seed = b_size, tol, seed
        self._params: dict[str, torch.Tensor] | None = None
        self._buffers: dict[str, torch.Tensor] = {}
        self.log: list[float] = []
        self.noise: list[float] = []
        self.first: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.rounds: list[tuple[int, int, int]] = []
        self.peel = not (
            observation.train_mode
            and any(
                isinstance(m, nn.modules.batchnorm._BatchNorm) for m in observation.model.modules()
            )
        )

    def _polish(self, a: np.ndarray, tol: float, x: np.ndarray) -> np.ndarray:
        """Recompute a sample found on a peeled (noisier) gradient from the original one: its
        ReLU output is the null vector of the original V restricted to its inactive neurons."""
        if self.first is None or tol <= self.tol:
            return x
        v0, m0, basis0 = self.first
        inactive = a <= tol * a.max()
        if inactive.sum() < v0.shape[1]:
            return x
        c = np.linalg.svd(v0[inactive], full_matrices=False)[2][-1]
        a0 = v0 @ c
        a0 = a0 if a0.sum() > 0 else -a0
        p0, ok = _support_solve(m0, self.bias, np.maximum(a0, 0) / np.linalg.norm(a0), self.tol)
        return p0 @ basis0 if ok else x

    def details(self) -> dict:
        return {"rounds": self.rounds, "peel_scores": self.log, "noise": self.noise}

    def _round(self, rng, remaining, budget, patience):  # noqa: ANN001, ANN202
        """One search over the cone of the current (peeled) gradient; returns found samples."""
        g_w = self.grads[self.layer.weight].cpu()
        basis, noise1 = row_basis_noise(g_w, remaining, self.seed)
        basis = basis.numpy()
        m = self.weight @ basis.T
        v, noise2 = row_basis_noise(self.grads[self.layer.next_weight], remaining, self.seed)
        v = v.T.numpy()
        # Peeling leaves rounding errors behind: zero thresholds follow the measured noise floor.
        tol = max(self.tol, 10 * noise1, 10 * noise2)
        self.noise.append(max(noise1, noise2))
        norms = np.linalg.norm(v, axis=1)
        live = norms > tol * norms.max()
        if self.first is None:
            self.first = (v, m, basis)
        found_a: list[np.ndarray] = []
        found_x: list[np.ndarray] = []
        tries, fails = 0, 0
        a_eq = v.sum(axis=0)[None]
        while len(found_x) < remaining and tries < budget and fails < patience:
            tries += 1
            cost = rng.standard_normal(v.shape[0])
            if found_a:
                covered = np.max(np.stack(found_a), axis=0) > tol
                targets = np.flatnonzero(live & ~covered)
                if len(targets):
                    # Maximise a neuron no found sample activates: its ray is a missing sample.
                    cost = 1e-3 * cost
                    cost[rng.choice(targets)] = -1.0
            res = linprog(
                cost @ v, A_ub=-v[live], b_ub=np.zeros(int(live.sum())), A_eq=a_eq, b_eq=[1.0],
                bounds=[(None, None)] * remaining, method="highs",
            )  # fmt: skip
            fails += 1
            if res.status != 0:
                continue
            a = v @ res.x
            a = np.where(live, a, 0.0) / np.linalg.norm(a)
            if any(float(a @ f) > 1 - 1e-6 for f in found_a):
                continue
            p, ok = _support_solve(m, self.bias, a, tol)
            for frac in (0.2, 0.3, 0.4) if not ok else ():
                # A vertex with only B−1 zeros: walk to a nearby ray with many zeros.
                a = _trimmed_ray(v, a, frac)
                p, ok = _support_solve(m, self.bias, a, tol)
                if ok:
                    ok = not any(float(a @ f) > 1 - 1e-6 for f in found_a)
                    break
            if ok:
                found_a.append(a)
                found_x.append(self._polish(a, tol, p @ basis))
                fails = 0
        return found_x, tries

    def _gradient(self, x: np.ndarray, label: int, names: list[str]) -> list[torch.Tensor]:
        """One sample's share (1/B)·∇ℓ(x, label) of the mean-loss gradient, for `names`."""
        obs = self.obs
        if self._params is None:
            self._params = {
                k: v.detach().double().cpu().requires_grad_(True) for k, v in obs.parameters.items()
            }
            self._buffers = {
                k: (v.double() if v.is_floating_point() else v).cpu()
                for k, v in obs.buffers.items()
            }
        model, was_training = obs.model, obs.model.training
        model.train(obs.train_mode)
        inp = torch.from_numpy(x).reshape(1, *obs.input_shape)
        try:
            logits = forward(model, self._params, self._buffers, inp)
        finally:
            model.train(was_training)
        loss = loss_fn(logits, torch.tensor([label]))
        grads = torch.autograd.grad(loss, [self._params[n] for n in names])
        return [g / self.b_size for g in grads]

    def _subtract(self, x: np.ndarray, rank: int, rng: np.random.Generator) -> float:
        """Fit the sample's label (the one whose gradient lowers the rank of the next layer's
        gradient) and peel its contribution off every layer. Returns the fit's rank score."""
        name = self.layer.next_weight
        g2 = self.grads[name].cpu()
        right = torch.from_numpy(rng.standard_normal((g2.shape[1], rank + 4)))
        left = torch.from_numpy(rng.standard_normal((rank + 4, g2.shape[0])))
        y = left @ g2 @ right
        scores = []
        for label in range(self.obs.num_classes):
            (g,) = self._gradient(x, label, [name])
            sv = torch.linalg.svdvals(y - left @ g @ right)
            scores.append(float(sv[rank - 1] / sv[0]) if rank > 1 else float(sv[0]))
        label = int(np.argmin(scores))
        if rank == 1:
            scores[label] /= float(torch.linalg.svdvals(y)[0])
        if scores[label] > 1e-3:
            return scores[label]
        names = list(self.grads)
        contrib = self._gradient(x, label, names)
        self.grads = {k: self.grads[k] - c for k, c in zip(names, contrib, strict=True)}
        return scores[label]

    def run(self, rng: np.random.Generator, budget: int) -> tuple[np.ndarray, list[bool], int]:
        found: list[np.ndarray] = []
        tries = 0
        while len(found) < self.b_size and tries < budget:
            remaining = self.b_size - len(found)
            patience = 6 if self.peel else budget
            new, used = self._round(rng, remaining, budget - tries, patience)
            tries += used
            self.rounds.append((remaining, len(new), used))
            # A sample peeled imperfectly can reappear in the residual: keep it once.
            new = [x for x in new if not any(_same(x, f) for f in found)]
            if not new:
                break
            found += new
            if len(found) == self.b_size or not self.peel:
                break
            for k, x in enumerate(new):
                score = self._subtract(x, remaining - k, rng)
                self.log.append(score)
                if score > 1e-3:
                    self.peel = False
                    break
            if not self.peel:
                break
        dim = self.weight.shape[1]
        return (
            _assemble(found, [], self.b_size, dim, self.bias.dtype),
            [i < len(found) for i in range(self.b_size)],
            tries,
        )


class _Sampling:
    """The published SPEAR search: null vectors of B−1 random rows of L, refined."""

    def __init__(self, weight, bias, basis, g_w, g_b, b_size, tol):  # noqa: ANN001
        self.weight, self.bias = weight.numpy(), bias.numpy()
        self.basis = basis.numpy()
        self.l = (g_w @ basis.T).numpy()  # G_W = L R
        self.g_b = g_b.numpy()
        self.b_size, self.tol = b_size, tol

    def details(self) -> dict:
        return {}

    def _refine(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        keep = max(self.b_size, int(0.3 * len(rows)))
        for _ in range(8):
            idx = np.argsort(np.abs(rows @ q))[:keep]
            q_new = np.linalg.svd(rows[idx], full_matrices=False)[2][-1]
            if abs(abs(q_new @ q) - 1) < 1e-14:
                return q_new
            q = q_new
        return q

    def run(self, rng: np.random.Generator, budget: int) -> tuple[np.ndarray, list[bool], int]:
        b_size, tol = self.b_size, self.tol
        norms = np.linalg.norm(self.l, axis=1)
        live = norms > tol * norms.max()
        rows = self.l[live] / norms[live, None]
        found: list[np.ndarray] = []
        tries = 0
        if b_size == 1:
            found = [np.ones(1)]
        while len(found) < b_size and tries < budget:
            tries += 1
            pick = rng.choice(len(rows), size=b_size - 1, replace=False)
            q = np.linalg.svd(rows[pick], full_matrices=True)[2][-1]
            q = self._refine(rows, q)
            zeros = int((np.abs(rows @ q) < 100 * tol).sum())
            if zeros >= 2 * b_size and all(abs(q @ f) < 1 - 1e-6 for f in found):
                found.append(q)
        if len(found) < b_size:
            # Not every direction was found: no exact answer for the batch.
            x = np.tile(self.basis.mean(axis=0) * 0, (b_size, 1))
            return x, [False] * b_size, tries
        q_mat = np.stack(found, axis=1)
        scales, *_ = np.linalg.lstsq(self.l @ q_mat, self.g_b, rcond=None)
        qs = q_mat * scales[None]
        x = np.linalg.solve(qs, self.basis)  # rows are the samples, (Q diag s)⁻¹ R
        d = self.l @ qs
        z = self.weight @ x.T + self.bias[:, None]
        certified = []
        for k in range(b_size):
            zero = np.abs(d[:, k]) <= 100 * tol * np.abs(d[:, k]).max()
            scale = np.abs(z[:, k]).max()
            certified.append(bool(not (z[zero, k] > 100 * tol * scale).any()
                                  and not (z[~zero, k] < -100 * tol * scale).any()))  # fmt: skip
        return x, certified, tries


def _same(x: np.ndarray, y: np.ndarray) -> bool:
    return float(np.linalg.norm(x - y)) < 1e-3 * max(float(np.linalg.norm(y)), 1e-300)


def _trimmed_ray(v: np.ndarray, a: np.ndarray, frac: float) -> np.ndarray:
    """Trimmed refinement: the null vector of V on the `frac` smallest entries of a, repeated."""
    keep = max(v.shape[1], int(frac * len(a)))
    for _ in range(10):
        idx = np.argsort(a)[:keep]
        new = v @ np.linalg.svd(v[idx], full_matrices=False)[2][-1]
        new = new if new.sum() > 0 else -new
        new = np.maximum(new, 0) / np.linalg.norm(new)
        if abs(float(new @ a) - 1) < 1e-12:
            return new
        a = new
    return a


def _assemble(
    found: list[np.ndarray], spare: list[np.ndarray], b_size: int, dim: int, dtype: np.dtype
) -> np.ndarray:
    """Certified samples first, then the best uncertified guesses, then zeros (mean image)."""
    rows = (found + spare)[:b_size]
    rows += [np.zeros(dim, dtype=dtype)] * (b_size - len(rows))
    out = np.stack(rows)
    if not math.isfinite(float(np.abs(out).sum())):
        raise GradinvError("spear: the reconstruction is not finite")
    return out
