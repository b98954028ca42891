"""The generative parametrisations and attacks (GIAS, GIFD, GGL, deep image prior)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from gradinv.attacks.engine.generative import GeneratorWeights, project_l1_ball
from gradinv.fl import observe
from gradinv.generative import build_generator
from gradinv.models import build_model


def _brute_force_l1(v: np.ndarray, r: float) -> np.ndarray:
    """min ‖x − v‖² s.t. ‖x‖₁ ≤ r, solved as a QP over x = p − q, p, q ≥ 0."""
    n = len(v)

    def f(w):  # noqa: ANN001, ANN202
        x = w[:n] - w[n:]
        return float(((x - v) ** 2).sum())

    cons = [{"type": "ineq", "fun": lambda w: r - w.sum()}]
    w0 = np.concatenate([np.maximum(v, 0), np.maximum(-v, 0)]) * 0.5
    res = minimize(f, w0, bounds=[(0, None)] * (2 * n), constraints=cons, method="SLSQP",
                   options={"ftol": 1e-14, "maxiter": 500})  # fmt: skip
    return res.x[:n] - res.x[n:]


@pytest.mark.parametrize("seed", range(6))
def test_l1_ball_projection_matches_a_brute_force_solution(seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(3, 7))
    radius = np.array([0.5, 2.0, 100.0])  # the last row is inside: unchanged
    got = project_l1_ball(torch.from_numpy(v), torch.from_numpy(radius)).numpy()
    for row, r, g in zip(v, radius, got, strict=True):
        np.testing.assert_allclose(g, _brute_force_l1(row, r), atol=1e-5)
        assert np.abs(g).sum() <= r + 1e-9
    np.testing.assert_array_equal(got[2], v[2])


def test_per_image_generator_copies_are_independent():
    torch.manual_seed(0)
    model = build_model("lenet", (1, 16, 16), 10)
    obs = observe(model, torch.rand(2, 1, 16, 16), torch.tensor([1, 2]), share_labels=True)
    gen = build_generator("dcgan", channels=1, image_size=16)
    z = torch.randn(2, gen.latent_dim)
    weights = GeneratorWeights(obs, gen, z)
    variables = [v.unsqueeze(0).clone().requires_grad_(True) for v in weights.initial(None, 0)]
    before = weights.inputs(variables).detach()
    loss = weights.inputs(variables)[0, 0].sum()  # depends on image 0 only
    grads = torch.autograd.grad(loss, variables)
    assert all(g[0, 1].abs().max() == 0 for g in grads), "image 1's copy got a gradient"
    assert any(g[0, 0].abs().max() > 0 for g in grads)
    with torch.no_grad():  # one step on image 0's copy leaves image 1 unchanged
        for v, g in zip(variables, grads, strict=True):
            v -= 0.1 * g
    after = weights.inputs(variables).detach()
    assert torch.equal(after[0, 1], before[0, 1]) and not torch.equal(after[0, 0], before[0, 0])
