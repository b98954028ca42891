"""`mixture:SPEC+SPEC[*K]`: several datasets as one (e.g. a generator's auxiliary data)."""

from __future__ import annotations

import pytest
import torch

from gradinv.data import load_dataset, parse_split, with_split
from gradinv.errors import GradinvError


def test_mixture_concatenates_components_with_prefixed_classes_and_repeats():
    digits, lfw = load_dataset("digits@train"), load_dataset("lfw@train")
    mix = load_dataset("mixture:digits@train+lfw@train*3")
    assert len(mix) == len(digits) + 3 * len(lfw)
    assert mix.num_classes == 12 and mix.classes[0] == "digits@train/0"
    assert mix.classes[-1] == "lfw@train/non-face"
    assert mix.split == "train" and mix.spec == "mixture:digits@train+lfw@train*3"
    n = len(digits)
    # image n is lfw's first; n + len(lfw) is its first again (the second copy)
    same = mix.load([n, n + len(lfw)], 25)
    assert torch.equal(same[0], same[1])
    assert torch.equal(same[0], lfw.load([0], 25)[0])
    assert torch.equal(mix.load([5], 8)[0], digits.load([5], 8)[0])
    assert mix.labels[n] == 10 + lfw.labels[0]
    assert mix.content_hash(n) == lfw.content_hash(0)


def test_mixture_channels_and_splits():
    with pytest.raises(GradinvError, match="pass channels=1 or 3"):
        load_dataset("mixture:digits@train+sample@train")
    mix = load_dataset("mixture:digits@train+sample@train", channels=1)
    assert mix.channels == 1 and mix.load([0, len(mix) - 1], 16).shape == (2, 1, 16, 16)
    assert parse_split("mixture:digits@train+lfw@train")[1] == "train"
    assert parse_split("mixture:digits@train+lfw@test")[1] == "test"  # any test part: test
    assert parse_split("mixture:digits+lfw@train")[1] is None
    assert (
        with_split("mixture:digits@train+lfw@train*3", "test") == "mixture:digits@test+lfw@test*3"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mixture:digits@train", "at least two components"),
        ("mixture:digits@train+", "empty component"),
        ("mixture:digits@train+lfw*x", "not an integer"),
        ("mixture:digits@train+lfw*0", "repeat count must be"),
        ("mixture:digits+mixture:lfw+sample", "cannot contain another mixture"),
        ("mixture:digits+nonsense", "unknown dataset"),
    ],
)
def test_bad_mixture_specs_are_one_line_errors(spec, message):
    with pytest.raises(GradinvError, match=message) as info:
        load_dataset(spec)
    assert "\n" not in str(info.value)


def test_a_generator_refuses_a_mixture_with_a_test_part(tmp_path):
    from gradinv.generative import train_generator

    with pytest.raises(GradinvError, match="refusing to train a generator"):
        train_generator("mixture:digits@train+lfw@test", 1, 16, epochs=1, out=str(tmp_path / "g"))
