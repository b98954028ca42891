"""Learned inversion: hashing, the matched loss, client-exact training data, train split only,
bit-exact resume, the attack's refusals, hidden batch sizes, the CLI and the quick experiment."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from gradinv.attacks import make_attack
from gradinv.cli import main
from gradinv.data import load_dataset, sample_batch
from gradinv.defenses import parse_defense
from gradinv.errors import GradinvError
from gradinv.fl import observe
from gradinv.learned import (
    CountSketch,
    UpdateMaker,
    cached_inverter,
    flatten,
    matched_mse,
    read_record,
    train_inverter,
)
from gradinv.learned import train as train_module
from gradinv.models import build_model
from gradinv.pipeline import RunConfig, run

# a tiny recipe on digits (1438 training images) at 16x16: seconds on one core
TINY = dict(model="lenet", data="digits@train", channels=1, image_size=16, epochs=2, seed=3,
            max_images=256, val_images=64, hidden=(32,), sketch=256, batch=32,
            stats_updates=128)  # fmt: skip
DIGITS = dict(mean=[0.3], std=[0.3])  # the deployment's normalisation in these tests


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("inverters"))


def _tiny(cache, **changes):
    return cached_inverter(cache_dir=cache, **{**TINY, **DIGITS, **changes})


def _observation(batch_size=1, seed=0, model_seed=0, share_batch_size=True, defenses=(),
                 mean=DIGITS["mean"], std=DIGITS["std"], model="lenet", size=16):  # fmt: skip
    data = load_dataset("digits@test", 1)
    x, y = sample_batch(data, batch_size, "random", seed=seed, image_size=size)
    torch.manual_seed(model_seed)
    net = build_model(model, (1, size, size), 10)
    obs = observe(net, x, y, mean=mean, std=std, share_batch_size=share_batch_size,
                  defenses=[parse_defense(d) for d in defenses], seed=seed)  # fmt: skip
    return obs, x, y


# --- hashing -------------------------------------------------------------------------------------
def test_sketch_is_deterministic_and_spreads_entries():
    a, b = CountSketch(1000, 64, seed=5), CountSketch(1000, 64, seed=5)
    assert torch.equal(a.buckets, b.buckets) and torch.equal(a.signs, b.signs)
    assert not torch.equal(a.buckets, CountSketch(1000, 64, seed=6).buckets)
    assert set(a.signs.tolist()) == {-1.0, 1.0} and a.bucket_sizes().sum() == 1000
    assert a.bucket_sizes().min() > 0  # every bucket used at 15.6 entries per bucket
    x = torch.randn(3, 1000)
    assert torch.equal(CountSketch(1000, 0)(x), x)  # D = 0: no hashing
    with pytest.raises(GradinvError, match="expects 1000 entries"):
        a(torch.randn(999))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.integers(1, 40), st.integers(0, 10**6),
       st.floats(-1e3, 1e3, allow_nan=False))  # fmt: skip
def test_sketch_is_linear(size_in, size_out, seed, c):
    s = CountSketch(size_in, size_out, seed)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(2, size_in, generator=gen, dtype=torch.float64)
    b = torch.randn(2, size_in, generator=gen, dtype=torch.float64)
    assert torch.allclose(s(a + b), s(a) + s(b), rtol=0, atol=1e-12)
    assert torch.allclose(s(c * a), c * s(a), rtol=1e-12, atol=1e-12)
    # the sketch of a batch mean is the mean of the sketches (what training relies on)
    assert torch.allclose(s(a.mean(0)), s(a).mean(0), rtol=0, atol=1e-12)


# --- the matched loss ----------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10**6))
def test_matched_loss_is_invariant_to_permuting_the_targets(b, seed):
    gen = torch.Generator().manual_seed(seed)
    pred = torch.rand(3, b, 1, 4, 4, generator=gen)
    target = torch.rand(3, b, 1, 4, 4, generator=gen)
    loss, slots = matched_mse(pred, target)
    perm = torch.randperm(b, generator=gen)
    again, _ = matched_mse(pred, target[:, perm])
    assert torch.allclose(loss, again, rtol=0, atol=1e-7)
    # and it is the best assignment: no fixed order does better
    assert (loss <= (pred - target).pow(2).mean(dim=(1, 2, 3, 4)) + 1e-7).all()
    assert (slots.sort(1).values == torch.arange(b)).all()  # a permutation per example


def test_matched_loss_with_more_slots_than_images():
    pred = torch.zeros(1, 4, 1, 2, 2)
    pred[0, 2] = 1.0
    target = torch.ones(1, 1, 1, 2, 2)
    loss, slots = matched_mse(pred, target)
    assert slots.tolist() == [[2]] and float(loss) == 0.0


# --- training data as the client computes it -----------------------------------------------------
@pytest.mark.parametrize("defenses", [(), ("sign",), ("prune:ratio=0.99",), ("noise:std=0.01",)])
def test_training_updates_equal_the_clients(defenses):
    data = load_dataset("digits@test", 1)
    torch.manual_seed(0)
    net = build_model("lenet", (1, 16, 16), 10)
    maker = UpdateMaker(net, [0.3], [0.3], [parse_defense(d) for d in defenses])
    for b in (1, 4):
        x, y = sample_batch(data, b, "random", seed=b, image_size=16)
        obs = observe(net, x, y, mean=[0.3], std=[0.3],
                      defenses=[parse_defense(d) for d in defenses], seed=11)  # fmt: skip
        expected = flatten(obs.update, maker.names)
        got = maker.updates(x, y, b, [11])[0]
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
        assert torch.equal(got != 0, expected != 0)


def test_models_with_batchnorm_and_model_changing_defenses_are_refused():
    net = build_model("convnet", (1, 16, 16), 10, width=4)
    with pytest.raises(GradinvError, match="without BatchNorm"):
        UpdateMaker(net, [0.3], [0.3])
    with pytest.raises(GradinvError, match="changes the model or how the update is computed"):
        UpdateMaker(build_model("lenet", (1, 16, 16), 10), [0.3], [0.3], [parse_defense("precode")])


# --- train split only ----------------------------------------------------------------------------
def test_test_split_is_refused(tmp_path):
    with pytest.raises(GradinvError, match="refusing to train an inverter on digits@test"):
        train_inverter(**{**TINY, "data": "digits@test"}, out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_no_test_image_is_used(tmp_path, monkeypatch):
    """Every image the trainer turns into an update comes from @train: content hashes (sha256
    of the native pixels) of the data it loads are disjoint from @test's, and the quantised
    images it computes gradients of all occur in @train and none in @test."""
    seen = {"datasets": [], "images": set()}
    real_images, real_per_sample = train_module.training_images, UpdateMaker.per_sample

    def images(dataset, size, max_images):
        seen["datasets"].append(dataset)
        return real_images(dataset, size, max_images)

    def per_sample(self, x, y):
        for img in x:
            seen["images"].add((img * 255).round().to(torch.uint8).numpy().tobytes())
        return real_per_sample(self, x, y)

    monkeypatch.setattr(train_module, "training_images", images)
    monkeypatch.setattr(UpdateMaker, "per_sample", per_sample)
    out = train_inverter(**{**TINY, "epochs": 1}, **DIGITS, out=str(tmp_path / "inv"),
                         progress=False)  # fmt: skip
    [dataset] = seen["datasets"]
    test = load_dataset("digits@test", 1)
    assert dataset.split == "train"
    assert not set(dataset.content_hashes()) & set(test.content_hashes())

    def quantised(ds):
        x = ds.load(range(len(ds)), 16)
        return {(v * 255).round().to(torch.uint8).numpy().tobytes() for v in x}

    assert seen["images"] and seen["images"] <= quantised(dataset)
    assert not seen["images"] & quantised(test)
    record = read_record(out)
    assert record["data"]["spec"] == "digits@train" and record["data"]["split"] == "train"


# --- resume --------------------------------------------------------------------------------------
def _interrupt_at(monkeypatch, call):
    """Press Ctrl-C (a real SIGINT) right after the `call`-th training step's loss."""
    real, count = train_module.Trainer.loss, {"n": 0}

    def loss(self, *args):
        out = real(self, *args)
        count["n"] += 1
        if count["n"] == call:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(train_module.Trainer, "loss", loss)


@pytest.mark.parametrize("head", ["per-size", "set"])
def test_resume_is_bit_exact(tmp_path, monkeypatch, cache, head):
    recipe = {**TINY, **DIGITS, "batch_sizes": (1, 2), "head": head}
    reference = _tiny(cache, batch_sizes=(1, 2), head=head)
    expected = load_file(os.path.join(reference, "inverter.safetensors"))
    # 256 training images (besides 64 held out): 8 + 4 steps of 32 groups per epoch
    for call, at in ((12, [0, 12]), (15, [1, 3])):  # end of epoch 1; in the middle of epoch 2
        out = str(tmp_path / f"run{call}")
        with monkeypatch.context() as m:
            _interrupt_at(m, call)
            with pytest.raises(KeyboardInterrupt):
                train_inverter(**recipe, out=out, progress=False)
        saved = json.loads((tmp_path / f"run{call}" / "checkpoint.json").read_text())
        assert [saved["progress"]["epoch"], saved["progress"]["step"]] == at
        assert not os.path.exists(os.path.join(out, "inverter.json"))
        train_inverter(**recipe, out=out, progress=False)  # the same call resumes
        got = load_file(os.path.join(out, "inverter.safetensors"))
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        record, ref = read_record(out), read_record(reference)
        assert record["training"]["losses"] == ref["training"]["losses"]
        assert record["training"]["sessions"] == 2
        assert not os.path.exists(os.path.join(out, "checkpoint.json"))


def test_inverter_record(cache):
    record = read_record(_tiny(cache))
    m = record["model"]
    assert m["spec"] == {"name": "lenet", "options": {}} and m["seed"] == 0
    assert len(m["parameters_sha256"]) == 64 and m["input_shape"] == [1, 16, 16]
    assert record["normalization"] == {"mean": [0.3], "std": [0.3]}
    assert record["architecture"]["batch_sizes"] == [1] and record["architecture"]["sketch"] == 256
    assert record["data"]["spec"] == "digits@train" and record["defenses"] == []
    t = record["training"]
    assert t["epochs"] == 2 and len(t["losses"]) == 2 and t["threads"] == 1 and t["seconds"] > 0
    assert set(t["losses"][-1]["val_psnr"]) == {"1"}


# --- the attack ----------------------------------------------------------------------------------
def test_attack_inverts_in_one_pass(cache):
    directory = _tiny(cache)
    obs, x, _ = _observation()
    rec = make_attack("learned", inverter=directory).reconstruct(obs)
    assert rec.images.shape == x.shape and rec.images.dtype == torch.float32
    assert rec.info["batch_size"] == 1 and rec.info["batch_size_source"] == "told"
    assert 0 <= rec.images.min() and rec.images.max() <= 1
    again = make_attack("learned", inverter=directory).reconstruct(obs)
    assert torch.equal(rec.images, again.images)


@pytest.mark.parametrize("change, message", [
    (dict(model_seed=1), "parameters differ"),
    (dict(mean=[0.5]), "normalisation"),
    (dict(size=20), r"takes \(1, 16, 16\) inputs"),
    (dict(model="mlp4"), "trained for model"),
])  # fmt: skip
def test_attack_refuses_a_mismatched_observation(cache, change, message):
    directory = _tiny(cache)
    obs, _, _ = _observation(**change)
    with pytest.raises(GradinvError, match=message) as info:
        make_attack("learned", inverter=directory).reconstruct(obs)
    assert "\n" not in str(info.value)


def test_attack_needs_an_inverter_and_a_trained_size(cache, tmp_path):
    obs, _, _ = _observation()
    with pytest.raises(GradinvError, match="name a trained inverter"):
        make_attack("learned").reconstruct(obs)
    with pytest.raises(GradinvError, match="holds no inverter.json"):
        make_attack("learned", inverter=str(tmp_path)).reconstruct(obs)
    obs3, _, _ = _observation(batch_size=3)
    with pytest.raises(GradinvError, match=r"trained for batch sizes \[1\], not 3"):
        make_attack("learned", inverter=_tiny(cache)).reconstruct(obs3)


def test_hidden_batch_size(cache):
    directory = _tiny(cache, batch_sizes=(1, 2))
    obs, _, _ = _observation(batch_size=2, share_batch_size=False, seed=4)
    rec = make_attack("learned", inverter=directory, count="network").reconstruct(obs)
    assert rec.info["batch_size_source"] == "network"
    assert rec.info["batch_size"] in (1, 2) and rec.images.shape[0] == rec.info["batch_size"]
    assert set(rec.info["count_probabilities"]) == {"1", "2"}
    # LeNet's only linear layer is the classifier: its rank bounds B from below, never tells it
    with pytest.raises(
        GradinvError, match=r"cannot reveal the batch size analytically \(it shows at least"
    ):
        make_attack("learned", inverter=directory, count="analytic").reconstruct(obs)
    rec = make_attack("learned", inverter=directory, count="auto").reconstruct(obs)
    bound = rec.info["analytic_batch_size"]
    assert bound["estimate"] is None and rec.info["batch_size"] >= bound["at_least"] >= 1


def test_pipeline_scores_a_wrong_count_apart(cache, monkeypatch):
    directory = _tiny(cache, batch_sizes=(1, 2))
    from gradinv.learned import network

    real = network.Inverter.invert

    def always_one(self, updates, batch_size=None):  # a network that always counts one image
        return real(self, updates, batch_size or 1)

    monkeypatch.setattr(network.Inverter, "invert", always_one)
    config = RunConfig(attack="learned", data="digits@test", channels=1, image_size=16,
                       batch_size=2, share_batch_size=False, norm_mean=[0.3], norm_std=[0.3],
                       attack_options={"inverter": directory, "count": "network"})  # fmt: skip
    m = run(config, progress=False).metrics
    assert m["recovered_batch_size"] == 1 and m["batch_size_correct"] is False
    assert m["psnr"] is None and m["psnr_per_image"] is None


# --- command line --------------------------------------------------------------------------------
BASE = ["train-inverter", "--data", "digits@train", "--channels", "1", "--image-size", "16",
        "--epochs", "1", "--mean", "0.3", "--std", "0.3", "--no-progress",
        "--opt", "max_images=128", "--opt", "val_images=32", "--opt", "hidden=16",
        "--opt", "sketch=128", "--opt", "stats_updates=64", "--opt", "batch=32"]  # fmt: skip


@pytest.mark.parametrize("change, message", [
    (["--data", "digits@test"], "refusing to train an inverter on digits@test"),
    (["--batch-sizes", "1,x"], "--batch-sizes '1,x'"),
    (["--defense", "dpsgd"], "changes the model or how the update is computed"),
    (["--opt", "head=tree"], "choose from: per-size, set"),
    (["--model", "convnet"], "without BatchNorm"),
])  # fmt: skip
def test_cli_errors_are_one_line(tmp_path, capsys, change, message):
    assert main([*BASE, "--out", str(tmp_path / "i"), *change]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_train_attack_and_ctrl_c(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "i")
    with monkeypatch.context() as m:
        _interrupt_at(m, 2)
        assert main([*BASE, "--out", out]) == 130
    assert "checkpoint saved" in capsys.readouterr().err
    assert main([*BASE, "--out", out]) == 0
    assert "trained an inverter for lenet" in capsys.readouterr().out
    assert main([*BASE, "--out", out]) == 2
    assert "already holds a trained inverter" in capsys.readouterr().err
    report = str(tmp_path / "r")
    args = ["attack", "--attack", "learned", "--attack-opt", f"inverter={out}", "--data",
            "digits@test", "--channels", "1", "--image-size", "16", "--out", report,
            "--no-progress"]  # fmt: skip
    assert main(args) == 2  # the data's own statistics are not the deployment's
    assert "--norm-mean/--norm-std" in capsys.readouterr().err
    assert main([*args, "--norm-mean", "0.3", "--norm-std", "0.3"]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["attack"] == "learned" and metrics["recovered_batch_size"] == 1
    assert metrics["psnr"] > 5


def test_reconstruction_is_fast(cache):
    import time

    directory = _tiny(cache)
    obs, _, _ = _observation()
    attack = make_attack("learned", inverter=directory)
    attack.reconstruct(obs)  # loads the inverter once
    times = []
    for _ in range(5):
        start = time.perf_counter()
        attack.reconstruct(obs)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.05
    assert np.isfinite(times).all()


def test_cache_trains_once(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADINV_CACHE", str(tmp_path))
    recipe = {**TINY, **DIGITS, "epochs": 1, "max_images": 64, "val_images": 16}
    first = cached_inverter(**recipe)
    assert first.startswith(str(tmp_path / "inverters"))
    assert cached_inverter(**recipe, train=False) == first

    def fail(*args, **kwargs):
        raise AssertionError("trained twice")

    monkeypatch.setattr("gradinv.learned.cache.train_inverter", fail)
    assert cached_inverter(**recipe, threads=1) == first  # threads are not part of the recipe
    assert cached_inverter(**{**recipe, "seed": 4}, train=False) != first


# --- the experiment ------------------------------------------------------------------------------
def test_quick_experiment(tmp_path):
    """The --quick experiment end to end (its inverters come from the GRADINV_CACHE, so CI trains
    them once). Its thresholds sit well below the values its seed-0 run measured (docs/learned.md)."""
    from gradinv.experiments.learned_inversion import run_learned_inversion

    out = str(tmp_path / "learned")
    result = run_learned_inversion(out, quick=True)
    claims = {c["id"]: c for c in result["claims"]}
    assert set(claims) == {"in-distribution", "out-of-distribution", "hidden-batch-size",
                           "heads", "defenses", "speed", "ig-undefended"}  # fmt: skip
    for cid in ("in-distribution", "out-of-distribution", "hidden-batch-size", "defenses", "speed"):
        assert claims[cid]["holds"], claims[cid]
    for name in ("report.md", "results.json", "claims.json", "in_distribution.png", "psnr.png",
                 "out_of_distribution.png", "defenses.png", "batch.png"):  # fmt: skip
        assert os.path.getsize(os.path.join(out, name)) > 100, name
    cells = json.loads((tmp_path / "learned" / "results.json").read_text())["cells"]
    assert all(c["metrics"]["psnr"]["n"] >= 4 for c in cells if c["config"]["kind"] == "ig")
    told = [
        c
        for c in cells
        if c["config"]["kind"] == "learned" and not c["config"].get("hidden_batch_size")
    ]
    assert all(c["metrics"]["psnr"]["n"] >= 4 for c in told)


def test_experiment_cli_checks_the_output_first(tmp_path, capsys):
    (tmp_path / "claims.json").write_text("[]")
    assert main(["experiment", "learned-inversion", "--quick", "--out", str(tmp_path)]) == 2
    assert "already holds a report" in capsys.readouterr().err
