"""Priors: values and gradients on hand-checkable inputs, BatchNorm statistics, group consistency,
Langevin noise, and their use by the optimisation attacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from gradinv.attacks import InvertingGradients, make_attack
from gradinv.errors import GradinvError
from gradinv.fl import Observation, observe
from gradinv.models import build_model
from gradinv.priors import (
    PRIORS,
    BatchNormStatistics,
    GroupConsistency,
    LangevinNoise,
    make_prior,
    parse_prior,
)


def _value_and_grad(prior, x: torch.Tensor, dtype=torch.float64) -> tuple[float, torch.Tensor]:
    x = x.clone().to(dtype).requires_grad_(True)
    value = prior(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.item(), grad


def test_registry_names_and_parse():
    assert {"tv", "l2", "bn", "group", "langevin"} <= set(PRIORS.names())
    assert parse_prior("group=0.01") == ("group", 0.01)
    with pytest.raises(GradinvError, match="valid|choose"):
        parse_prior("sharpness=1")
    with pytest.raises(GradinvError, match="weight must be >= 0"):
        make_prior("l2", -1.0)


def test_tv_value_and_gradient():
    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # vertical edge: dy = 0, dx = 1
    value, grad = _value_and_grad(make_prior("tv", 2.0), x)
    assert value == pytest.approx(2.0)
    expected = 2.0 * torch.tensor([[[[-0.5, 0.5], [-0.5, 0.5]]]], dtype=torch.float64)
    assert torch.allclose(grad, expected)
    iso = PRIORS.get("tv")(weight=1.0, isotropic=True)
    value, grad = _value_and_grad(iso, x)
    assert value == pytest.approx(1.0, abs=1e-6)  # one position: sqrt(0² + 1²)
    assert torch.allclose(grad, torch.tensor([[[[-1.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64))


def test_l2_value_and_gradient():
    x = torch.stack([torch.ones(3, 2, 2), 2 * torch.ones(3, 2, 2)])  # norms² 12 and 48
    value, grad = _value_and_grad(make_prior("l2", 0.5), x)
    assert value == pytest.approx(0.5 * (12 + 48) / 2)
    assert torch.allclose(grad, 0.5 * 2 * x.double() / 2)


def _bn_observation(**kw) -> Observation:
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(4, 2))
    images = torch.rand(2, 1, 2, 2)
    return observe(model, images, torch.tensor([0, 1]), **kw)


def test_bn_value_and_gradient_with_running_statistics():
    obs = _bn_observation()  # fresh BatchNorm: running mean 0, running var 1
    prior = make_prior("bn", 1.0)
    prior.setup(obs)
    assert prior.source == "running"
    x = torch.full((2, 1, 2, 2), 0.5)  # batch mean 0.5, batch variance 0
    value, grad = _value_and_grad(prior, x, torch.float32)
    assert value == pytest.approx(abs(0.5 - 0) + abs(0 - 1), abs=1e-6)
    # d|mean|/dx = 1/8 per pixel; the variance term has zero gradient at a constant image
    assert torch.allclose(grad.double(), torch.full_like(grad, 1 / 8).double(), atol=1e-6)


def test_bn_uses_shared_batch_statistics_exactly():
    obs = _bn_observation(share_batch_stats=True)
    prior = make_prior("bn", 1.0)
    prior.setup(obs)
    assert prior.source == "batch"
    torch.manual_seed(0)
    nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(4, 2))
    truth = torch.rand(2, 1, 2, 2)  # same draw as in _bn_observation
    assert prior(truth).item() == pytest.approx(0.0, abs=1e-6)
    assert prior(truth.flip(-1) * 0.5).item() > 0.1


def test_bn_prior_needs_batchnorm():
    model = build_model("lenet", (3, 8, 8), 4)
    obs = observe(model, torch.rand(1, 3, 8, 8), torch.tensor([1]))
    with pytest.raises(GradinvError, match="BatchNorm"):
        make_prior("bn", 0.1).setup(obs)


def test_bn_matching_lowers_the_discrepancy_of_a_random_init():
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 16, 16), 4, width=8)
    images = torch.rand(4, 3, 16, 16)
    obs = observe(model, images, torch.arange(4), share_batch_stats=True)
    prior = BatchNormStatistics(weight=1.0)
    prior.setup(obs)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    before = prior.discrepancy(x).item()
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        prior(x).backward()
        opt.step()
    after = prior.discrepancy(x).item()
    assert after < 0.6 * before, (before, after)


def test_group_consistency_value_gradient_and_registration():
    p = GroupConsistency(weight=1.0, seeds=2)
    x = torch.cat([torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)])  # consensus 0.5
    value, grad = _value_and_grad(p, x)
    assert value == pytest.approx(4 * 0.25)
    expected = torch.cat([torch.full((1, 1, 2, 2), -0.5), torch.full((1, 1, 2, 2), 0.5)])
    assert torch.allclose(grad, expected.double())
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    swapped = torch.cat([a, b, b, a])  # member 2 holds the same images in the other order
    assert p(swapped).item() == pytest.approx(0.0)
    assert torch.equal(p.fuse(swapped, 2), torch.cat([a, b]))


def _lenet_obs(batch_size: int = 2) -> tuple[Observation, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("lenet", (3, 16, 16), 10).double()
    images = torch.rand(batch_size, 3, 16, 16, dtype=torch.float64)
    labels = torch.arange(batch_size)
    return observe(model, images, labels, share_labels=True), images


class _GroupIG(InvertingGradients):
    """IG with a group of identical seeds (only for the test)."""

    def make_priors(self):
        return [*super().make_priors(), GroupConsistency(weight=0.01, seeds=3, same_init=True)]


def test_group_with_identical_seeds_equals_a_single_run():
    obs, _ = _lenet_obs()
    single = InvertingGradients(iterations=15, progress=False).reconstruct(obs)
    group = _GroupIG(iterations=15, progress=False).reconstruct(obs)
    assert group.images.shape == single.images.shape
    assert torch.allclose(group.images, single.images, atol=1e-10)
    assert group.loss_history[-1] == pytest.approx(3 * single.loss_history[-1], rel=1e-9)


def test_langevin_noise_scale_decay_and_determinism():
    obs, _ = _lenet_obs()
    obs.std = (0.5, 0.5, 0.5)
    p = LangevinNoise(weight=0.1, decay=1.0)
    p.setup(obs)
    value, grad = _value_and_grad(p, torch.rand(1, 3, 4, 4))
    assert value == 0.0 and not grad.any()
    assert p.scale(0, 10) == pytest.approx(0.09) and p.scale(9, 10) == 0.0
    x = torch.zeros(1, 3, 200, 200, dtype=torch.float64)
    p.after_step(x, 0, 10, torch.Generator().manual_seed(3))
    assert x.std().item() == pytest.approx(
        0.09 / 0.5, rel=0.02
    )  # pixel std 0.09 = 0.18 in model space
    y = torch.zeros_like(x)
    p.after_step(y, 0, 10, torch.Generator().manual_seed(3))
    assert torch.equal(x, y)
    z = torch.zeros_like(x)
    p.after_step(z, 9, 10, torch.Generator().manual_seed(3))
    assert not z.any()


@pytest.mark.parametrize("attack", ["dlg", "ig"])
def test_every_prior_runs_in_the_optimisation_attacks(attack):
    obs, images = _lenet_obs()
    priors = (("tv", 1e-3), ("l2", 1e-6), ("group", 0.01), ("langevin", 0.01))
    rec = make_attack(attack, iterations=2, priors=priors, progress=False).reconstruct(obs)
    assert rec.images.shape == images.shape
    assert torch.isfinite(rec.images).all() and rec.images.min() >= 0 and rec.images.max() <= 1
    # same seed, same result
    again = make_attack(attack, iterations=2, priors=priors, progress=False).reconstruct(obs)
    assert torch.equal(rec.images, again.images)
