"""Generators: architecture contract, resumable training, files, custom generators, cache, CLI."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file, save_file

from gradinv.cli import main
from gradinv.data import load_dataset, with_split
from gradinv.data.formats import FASHION_MNIST_DIR
from gradinv.errors import GradinvError, Interrupted
from gradinv.generative import (
    build_generator,
    cached_generator,
    load_generator,
    read_record,
    save_generator,
    train_generator,
)
from gradinv.generative import train as train_module

TINY = dict(epochs=2, seed=3, progress=False, max_images=512)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("generators"))


@pytest.mark.parametrize("channels, size, stages", [(1, 28, 4), (3, 32, 4), (1, 25, 4), (3, 64, 5)])
def test_dcgan_contract(channels, size, stages):
    g = build_generator("dcgan", channels=channels, image_size=size).eval()
    assert g.output_shape == (channels, size, size) and g.num_stages == stages
    z = g.sample_latent(3, torch.Generator().manual_seed(0))
    x = g(z)
    assert x.shape == (3, channels, size, size) and x.abs().max() <= 1
    for k in range(stages + 1):
        h = g.features(z, k)
        assert torch.equal(g.from_stage(h, k), x)
    assert g.features(z, 0) is z
    if size in (28, 32):
        assert 100_000 <= sum(p.numel() for p in g.parameters()) <= 250_000
    with pytest.raises(GradinvError, match="stage 9 out of range"):
        g.features(z, 9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=2, image_size=28), "1- or 3-channel"),
    (dict(channels=1, image_size=7), "side 8..64"),
    (dict(channels=1, image_size=65), "side 8..64"),
    (dict(channels=1, image_size=28, depth=3), "no argument 'depth'"),
    (dict(channels=1, image_size=28, width=2.5), "must be an integer"),
])  # fmt: skip
def test_dcgan_refuses_bad_shapes(kwargs, message):
    with pytest.raises(GradinvError, match=message):
        build_generator("dcgan", **kwargs)


def _interrupt_at(monkeypatch, call):
    """Press Ctrl-C (a real SIGINT) right after the `call`-th training step."""
    real, count = train_module.gan_step, {"n": 0}

    def step(*args):
        out = real(*args)
        count["n"] += 1
        if count["n"] == call:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(train_module, "gan_step", step)


def test_resume_is_bit_exact(tmp_path, monkeypatch, tiny_cache):
    reference = cached_generator("sample@train", 3, 16, cache_dir=tiny_cache, **TINY)
    expected = load_file(os.path.join(reference, "generator.safetensors"))
    assert len(expected) > 0
    # sample@train has 510 images: 7 steps of 64 per epoch
    for call, at in ((7, [0, 7]), (10, [1, 3])):  # end of epoch 1; in the middle of epoch 2
        out = str(tmp_path / f"run{call}")
        with monkeypatch.context() as m:
            _interrupt_at(m, call)
            with pytest.raises(Interrupted, match="checkpoint saved"):
                train_generator("sample@train", 3, 16, out=out, **TINY)
        saved = json.loads((tmp_path / f"run{call}" / "checkpoint.json").read_text())
        assert [saved["progress"]["epoch"], saved["progress"]["step"]] == at
        assert not os.path.exists(os.path.join(out, "generator.json"))
        train_generator("sample@train", 3, 16, out=out, **TINY)  # the same call resumes
        got = load_file(os.path.join(out, "generator.safetensors"))
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        record, ref_record = read_record(out), read_record(reference)
        assert record["training"]["losses"] == ref_record["training"]["losses"]
        assert record["training"]["sessions"] == 2
        assert not os.path.exists(os.path.join(out, "checkpoint.json"))


def test_generator_files_round_trip(tmp_path, tiny_cache):
    directory = cached_generator("sample@train", 3, 16, cache_dir=tiny_cache, **TINY)
    record = read_record(directory)
    assert record["kind"] == "dcgan" and record["output_shape"] == [3, 16, 16]
    assert record["data"] == {"spec": "sample@train", "split": "train", "channels": 3,
                              "image_size": 16, "images": 510, "max_images": 512}  # fmt: skip
    assert len(record["training"]["losses"]) == 2 and record["training"]["threads"] == 1
    assert os.path.getsize(os.path.join(directory, "samples.png")) > 1000
    g = load_generator(directory)
    assert not g.training and g.record["weights_sha256"]
    z = g.sample_latent(4)
    out = save_generator(g, str(tmp_path / "copy"), "dcgan", record["kwargs"], note="copy")
    g2 = load_generator(out)
    assert torch.equal(g(z), g2(z)) and g2.record["note"] == "copy"


def test_no_test_image_in_the_training_set(tiny_cache):
    directory = cached_generator("lfw@train", 1, 16, cache_dir=tiny_cache, epochs=1, batch_size=32)
    spec = read_record(directory)["data"]["spec"]
    assert spec == "lfw@train"
    train = set(load_dataset(spec).content_hashes())
    test = set(load_dataset(with_split(spec, "test")).content_hashes())
    assert train and test and not train & test


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist absent")
def test_fashion_mnist_generator_never_sees_test_images(tiny_cache):
    directory = cached_generator(
        "fashion-mnist@train", 1, 28, cache_dir=tiny_cache, epochs=1, max_images=256
    )
    spec = read_record(directory)["data"]["spec"]
    train = load_dataset(spec)
    test = load_dataset(with_split(spec, "test"))
    assert train.split == "train" and not set(train.content_hashes()) & set(test.content_hashes())


def test_damaged_directories_are_one_line_errors(tmp_path, tiny_cache):
    with pytest.raises(GradinvError, match="generator directory not found"):
        load_generator(str(tmp_path / "missing"))
    with pytest.raises(GradinvError, match="holds no generator.json"):
        load_generator(str(tmp_path))
    directory = tmp_path / "g"
    g = build_generator("dcgan", channels=1, image_size=8)
    save_generator(g, str(directory), "dcgan", {"channels": 1, "image_size": 8})
    (directory / "generator.safetensors").write_bytes(b"garbage")
    with pytest.raises(GradinvError, match="not a readable safetensors file"):
        load_generator(str(directory))
    save_file({"x": torch.zeros(1)}, str(directory / "generator.safetensors"))
    with pytest.raises(GradinvError, match="checksum"):
        load_generator(str(directory))
    record = json.loads((directory / "generator.json").read_text())
    del record["weights_sha256"]
    (directory / "generator.json").write_text(json.dumps(record))
    with pytest.raises(GradinvError, match="does not match the architecture"):
        load_generator(str(directory))
    (directory / "generator.json").write_text("{not json")
    with pytest.raises(GradinvError, match="not readable JSON"):
        load_generator(str(directory))


CUSTOM = """
import torch.nn as nn

class MyGenerator(nn.Module):
    def __init__(self, latent_dim=8, side=6, staged=True, squash=True):
        super().__init__()
        self.latent_dim = latent_dim
        layers = [nn.Linear(latent_dim, side * side), nn.Unflatten(1, (1, side, side))]
        layers.append(nn.Tanh() if squash else nn.Identity())
        if staged:
            self.stages = nn.ModuleList([nn.Sequential(*layers[:2]), layers[2]])
        else:
            self.net = nn.Sequential(*layers)

    def forward(self, z):
        if hasattr(self, "stages"):
            return self.stages[1](self.stages[0](z))
        return self.net(z)
"""


def _custom(directory, **kwargs):
    import importlib.util

    directory.mkdir()
    (directory / "gen.py").write_text(CUSTOM)
    spec = importlib.util.spec_from_file_location("mygen_test", directory / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.MyGenerator(**kwargs)
    if not kwargs.get("squash", True):
        net.net[0].bias.data.fill_(5.0)  # outputs far outside [-1, 1]
    save_file(net.state_dict(), str(directory / "generator.safetensors"))
    record = {"kind": "custom", "file": "gen.py", "class": "MyGenerator", "kwargs": kwargs}
    (directory / "generator.json").write_text(json.dumps(record))
    return net


def test_custom_generator(tmp_path):
    net = _custom(tmp_path / "staged", latent_dim=8, side=6)
    g = load_generator(str(tmp_path / "staged"))
    z = torch.randn(2, 8)
    assert g.latent_dim == 8 and g.output_shape == (1, 6, 6) and g.num_stages == 2
    assert torch.equal(g(z), net(z)) and torch.equal(g.from_stage(g.features(z, 1), 1), net(z))

    _custom(tmp_path / "plain", latent_dim=4, staged=False)
    plain = load_generator(str(tmp_path / "plain"))
    assert plain(torch.randn(1, 4)).shape == (1, 1, 6, 6)
    with pytest.raises(GradinvError, match="no `stages`: feature-domain search"):
        plain.features(torch.randn(1, 4), 1)

    _custom(tmp_path / "loud", latent_dim=4, staged=False, squash=False)
    with pytest.raises(GradinvError, match=r"in \[-1, 1\]"):
        load_generator(str(tmp_path / "loud"))
    record = json.loads((tmp_path / "plain" / "generator.json").read_text())
    for change, message in (({"file": "../gen.py"}, "inside the directory"),
                            ({"class": "Nope"}, "no nn.Module class 'Nope'"),
                            ({"kwargs": {"width": 3}}, "MyGenerator\\(\\*\\*kwargs\\) failed")):  # fmt: skip
        (tmp_path / "plain" / "generator.json").write_text(json.dumps(record | change))
        with pytest.raises(GradinvError, match=message):
            load_generator(str(tmp_path / "plain"))


def test_cache_trains_once(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADINV_CACHE", str(tmp_path))
    first = cached_generator("lfw@train", 1, 8, epochs=1, batch_size=32, max_images=64)
    assert first.startswith(str(tmp_path / "generators"))

    def fail(*args, **kwargs):
        raise AssertionError("trained twice")

    monkeypatch.setattr("gradinv.generative.cache.train_generator", fail)
    assert cached_generator("lfw@train", 1, 8, epochs=1, batch_size=32, max_images=64) == first


def _cli(*args):
    return main(["train-generator", "--no-progress", *args])


BASE = ["--data", "sample@train", "--channels", "3", "--image-size", "16", "--seed", "3",
        "--epochs", "2", "--max-images", "512"]  # fmt: skip


@pytest.mark.parametrize("change, message", [
    (["--channels", "2"], "channels must be 1 or 3"),
    (["--kind", "vae"], "unknown generator kind 'vae'; choose from: dcgan"),
    (["--data", "sample@test"], "refusing to train a generator on sample@test"),
    (["--data", "folder:/does/not/exist@train"], "directory not found"),
    (["--image-size", "100"], "side 8..64"),
    (["--opt", "foo=1"], "no option 'foo'"),
])  # fmt: skip
def test_cli_errors_are_one_line(tmp_path, capsys, change, message):
    assert _cli(*BASE, "--out", str(tmp_path / "g"), *change) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "g").exists()


def test_cli_ctrl_c_resume_and_overwrite(tmp_path, capsys, monkeypatch, tiny_cache):
    out = str(tmp_path / "g")
    with monkeypatch.context() as m:
        _interrupt_at(m, 5)
        assert _cli(*BASE, "--out", out) == 130
    assert "checkpoint saved" in capsys.readouterr().err
    assert _cli(*BASE, "--out", out) == 0
    assert "trained dcgan" in capsys.readouterr().out
    reference = cached_generator("sample@train", 3, 16, cache_dir=tiny_cache, **TINY)
    expected = load_file(os.path.join(reference, "generator.safetensors"))
    got = load_file(os.path.join(out, "generator.safetensors"))
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert _cli(*BASE, "--out", out) == 2
    assert "already holds a trained generator; pass --overwrite" in capsys.readouterr().err
    assert _cli(*BASE, "--out", out, "--epochs", "1", "--overwrite") == 0
    assert read_record(out)["training"]["epochs"] == 1
