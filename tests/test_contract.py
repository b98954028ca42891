"""The common contract every registered attack must satisfy (scikit-learn's common-test idea)."""

import dataclasses

import pytest
import torch

from gradinv.attacks import ATTACKS, Reconstruction, make_attack
from gradinv.data import sample_batch
from gradinv.errors import GradinvError
from gradinv.fl import observe
from gradinv.models import build_model


def _observation(cls, sample_data, share_labels=True):
    size, b = cls.contract_image_size, cls.contract_batch_size
    x, y = sample_batch(sample_data, b, "unique", seed=1, image_size=size)
    torch.manual_seed(0)
    model = build_model(cls.contract_model, (3, size, size), 10, **cls.contract_model_options)
    obs = observe(model, x, y, mean=[0.5] * 3, std=[0.25] * 3, share_labels=share_labels)
    return obs, x, y


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_contract(name, sample_data):
    cls = ATTACKS.get(name)
    assert dataclasses.is_dataclass(cls) and cls.name == name
    assert cls.__doc__ and "Example" in cls.__doc__, (
        "docstring must name the paper and show an example"
    )
    obs, x, y = _observation(cls, sample_data)
    update_before = {k: v.clone() for k, v in obs.update.items()}

    rec = make_attack(name, progress=False, seed=3, **cls.contract_options).reconstruct(obs)
    assert isinstance(rec, Reconstruction)
    assert rec.images.shape == x.shape and rec.images.dtype == torch.float32
    assert torch.isfinite(rec.images).all() and rec.images.min() >= 0 and rec.images.max() <= 1
    assert rec.labels is None or (len(rec.labels) == len(y) and rec.labels.max() < 10)
    assert all(torch.equal(update_before[k], v) for k, v in obs.update.items()), (
        "observation mutated"
    )

    again = make_attack(name, progress=False, seed=3, **cls.contract_options).reconstruct(obs)
    assert torch.equal(rec.images, again.images), "same seed must give the same result"


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_rejects_nan_gradients_and_unknown_options(name, sample_data):
    cls = ATTACKS.get(name)
    obs, _, _ = _observation(cls, sample_data)
    key = next(iter(obs.update))
    obs.update[key] = obs.update[key].clone()
    obs.update[key].view(-1)[0] = float("nan")
    with pytest.raises(GradinvError, match="NaN"):
        make_attack(name, progress=False, **cls.contract_options).reconstruct(obs)
    with pytest.raises(GradinvError, match="has no option 'bogus'"):
        make_attack(name, bogus=1)
