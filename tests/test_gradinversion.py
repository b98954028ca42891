"""GradInversion: registration, options, schedule, and a short run on a BatchNorm model with
recovered labels."""

from __future__ import annotations

import math

import pytest
import torch

from gradinv.attacks import ATTACKS, GradInversion, make_attack
from gradinv.data import load_dataset, sample_batch
from gradinv.errors import GradinvError
from gradinv.fl import observe
from gradinv.models import build_model
from gradinv.priors import BatchNormStatistics


def test_registered_with_the_published_defaults():
    assert ATTACKS.get("gradinversion") is GradInversion
    opts = GradInversion.options()
    assert (opts["distance"], opts["lr"], opts["iterations"]) == ("l2", 0.1, 20_000)
    assert (opts["grad_weight"], opts["tv"], opts["l2"], opts["bn"], opts["group"]) == (
        1e-3, 1e-4, 1e-6, 0.1, 0.01,
    )  # fmt: skip
    assert opts["label_strategy"] == "auto"


@pytest.mark.parametrize(
    "options, message",
    [({"seeds": 0}, "seeds"), ({"warmup": 1.0}, "warmup"), ({"bn": -1.0}, "option bn must be >= 0"),
     ({"grad_weight": 0.0}, "grad_weight"), ({"momentum": 1}, "no option")],
)  # fmt: skip
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(GradinvError, match=message):
        make_attack("gradinversion", **options)


def test_warmup_then_cosine_schedule():
    a = GradInversion(iterations=100, warmup=0.05)
    assert a.learning_rate(0) == pytest.approx(0.2)
    assert a.learning_rate(4) == pytest.approx(1.0)
    assert a.learning_rate(5) == pytest.approx(1.0)
    assert a.learning_rate(52) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert a.learning_rate(99) < 0.01


def test_short_run_on_resnet_with_recovered_labels():
    ds = load_dataset("sample")
    images, labels = sample_batch(ds, 2, "unique", seed=0, image_size=16)
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 16, 16), ds.num_classes, width=8)
    mean, std = ds.channel_stats(16)
    obs = observe(model, images, labels, mean=mean, std=std)  # labels not shared
    attack = make_attack("gradinversion", iterations=30, seeds=2, progress=False)
    rec = attack.reconstruct(obs)
    assert rec.images.shape == images.shape
    assert rec.info["labels_source"] == "auto"
    assert sorted(rec.labels.tolist()) == sorted(labels.tolist())
    assert rec.loss_history[-1] < 0.9 * rec.loss_history[0], rec.loss_history[::10]
    bn = BatchNormStatistics(weight=1.0)
    bn.setup(obs)
    start = rec.snapshots[0][1]
    assert bn.discrepancy(rec.images) < bn.discrepancy(start)
    again = make_attack("gradinversion", iterations=30, seeds=2, progress=False).reconstruct(obs)
    assert torch.equal(rec.images, again.images)  # same seed, same result


def test_runs_on_a_model_without_batchnorm():
    torch.manual_seed(0)
    model = build_model("lenet", (3, 8, 8), 4)
    obs = observe(model, torch.rand(2, 3, 8, 8), torch.tensor([1, 2]), share_labels=True)
    rec = GradInversion(iterations=3, seeds=2, progress=False).reconstruct(obs)
    assert rec.images.shape == (2, 3, 8, 8) and torch.isfinite(rec.images).all()
