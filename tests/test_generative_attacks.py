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


# --- fixes and options of the generative attacks ------------------------------------------------
def _obs(size=16, batch=1, seed=0):
    torch.manual_seed(seed)
    model = build_model("lenet", (1, size, size), 10)
    images, labels = torch.rand(batch, 1, size, size), torch.arange(batch)
    return observe(model, images, labels, share_labels=True), images


def test_latent_renormalisation_keeps_each_trials_starting_norm():
    from gradinv.attacks.engine.generative import Latent

    obs, _ = _obs(batch=2)
    latent = Latent(obs, build_generator("dcgan", channels=1, image_size=16), 2, renormalize=True)
    starts = [latent.initial(torch.Generator().manual_seed(s), t) for t, s in enumerate((1, 2))]
    z = torch.stack([v[0] for v in starts])  # (R=2, N=2, d)
    norms = z.norm(dim=-1)
    moved = (z * 3 + 1).requires_grad_(True)  # a big step changes every norm
    latent.project([moved])
    torch.testing.assert_close(moved.detach().norm(dim=-1), norms)


def test_deep_image_prior_keeps_nothing_of_a_trained_generator():
    obs, _ = _obs()
    g1, g2 = (build_generator("dcgan", channels=1, image_size=16) for _ in range(2))
    with torch.no_grad():
        for p in g2.parameters():
            p.add_(torch.randn_like(p))  # "trained": other weights, BatchNorm scales and shifts
        for name, b in g2.named_buffers():
            if "running" in name:
                b.add_(1.0)  # and other running statistics
    z = torch.randn(1, g1.latent_dim)
    w1, w2 = (GeneratorWeights(obs, g, z, random_init=True) for g in (g1, g2))
    v1, v2 = (w.initial(torch.Generator().manual_seed(0), 0) for w in (w1, w2))
    for a, b in zip(v1, v2, strict=True):
        assert torch.equal(a, b)
    assert all(torch.equal(w1.buffers[k], w2.buffers[k]) for k in w1.buffers)
    var = w2.buffers["stages.0.2.running_var"]
    assert torch.equal(var, torch.ones_like(var))


def test_latent_norm_term_is_zero_on_the_shell_and_grows_off_it():
    from gradinv.attacks.engine.generative import latent_norm_term

    d = 100
    on = torch.full((1, 2, d), 1.0)  # ‖z‖ = √d
    off = torch.full((1, 2, d), 2.0)  # ‖z‖ = 2√d: (2 − 1)² per image
    term = latent_norm_term(0.5)
    assert float(term([on])[0]) == pytest.approx(0.0)
    assert float(term([off])[0]) == pytest.approx(0.5 * 2)


def test_gias_keeps_stage_two_only_when_it_explains_the_update_better():
    from gradinv.attacks import make_attack

    obs, _ = _obs()
    rec = make_attack("gias", progress=False, generator="untrained", iterations=4, restarts=2,
                      weight_iterations=3).reconstruct(obs)  # fmt: skip
    first, second = rec.info["stage_losses"]
    assert rec.info["stage"] == (2 if second <= first else 1)
    assert rec.info["final_loss"] == pytest.approx(min(first, second))
    assert len(rec.loss_history) == 4 + 3  # both stages' histories, one after the other


def test_stage_one_learning_rate_decays_as_documented(monkeypatch):
    """GIAS and GIFD round 0 use ×0.1 at 3/8, 5/8, 7/8 of the latent iterations."""
    from gradinv.attacks import make_attack
    from gradinv.attacks.engine import optimisers

    factors = []
    original = optimisers.Adam.step

    def step(self, closure, lr_factor=1.0):
        factors.append(lr_factor)
        return original(self, closure, lr_factor)

    monkeypatch.setattr(optimisers.Adam, "step", step)
    obs, _ = _obs()
    for name, extra in (("gias", {"weight_iterations": 0}), ("gifd", {"feature_iterations": 1})):
        factors.clear()
        make_attack(name, progress=False, generator="untrained", iterations=8, restarts=1,
                    **extra).reconstruct(obs)  # fmt: skip
        assert factors[:8] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.001])


def test_auto_gives_its_generator_to_the_candidates_that_search_one():
    from gradinv.attacks import make_attack

    obs, _ = _obs()
    rec = make_attack("auto", progress=False, candidates=("ig", "gias"), iterations=3,
                      generator="untrained").reconstruct(obs)  # fmt: skip
    assert rec.info["candidates"]["gias"]["applies"], rec.info["candidates"]["gias"]
    without = make_attack("auto", progress=False, candidates=("ig", "gias"),
                          iterations=3).reconstruct(obs)  # fmt: skip
    assert not without.info["candidates"]["gias"]["applies"]
    assert "needs a generator" in without.info["candidates"]["gias"]["reason"]


def test_init_options_reach_the_init_attack():
    from gradinv.attacks import make_attack
    from gradinv.errors import GradinvError

    obs, _ = _obs()
    options = (("generator", "untrained"), ("iterations", 2), ("weight_iterations", 0))
    rec = make_attack("ig", progress=False, iterations=2, init="gias",
                      init_options=options).reconstruct(obs)  # fmt: skip
    assert rec.info["init"] == "gias"
    with pytest.raises(GradinvError, match="needs a generator"):
        make_attack("ig", progress=False, iterations=2, init="gias").reconstruct(obs)
    with pytest.raises(GradinvError, match="init_options need init"):
        make_attack("ig", init_options=options)
    with pytest.raises(GradinvError, match="has no option|unknown option"):
        make_attack("ig", init="gias", init_options=(("nonsense", 1),))


def test_matching_loss_in_float64_separates_what_float32_rounding_hides():
    from gradinv.attacks.engine import matching_loss

    obs, images = _obs(size=28)
    noisy = [(images + eps * torch.randn_like(images)).clamp(0, 1) for eps in (0, 1e-4, 1e-3, 1e-2)]
    f64 = [matching_loss(obs, x) for x in noisy]
    f32 = [matching_loss(obs, x, dtype=None) for x in noisy]
    assert f64 == sorted(f64) and f64[0] < 1e-13 and f64[-1] > 1e-10  # ranks by closeness
    assert max(f32) < 3e-7  # float32: all at its rounding floor (measured 0 or 1.2e-7)
