"""The common contract every registered attack must satisfy (scikit-learn's common-test idea)."""

import dataclasses

import pytest
import torch

from gradinv.attacks import ATTACKS, Reconstruction, make_attack
from gradinv.data import sample_batch
from gradinv.errors import GradinvError
from gradinv.fl import observe
from gradinv.models import build_model


def _observation(cls, sample_data, share_labels=True, with_model=False):
    size, b, c = cls.contract_image_size, cls.contract_batch_size, cls.contract_channels
    x, y = sample_batch(sample_data, b, "unique", seed=1, image_size=size)
    x = x[:, :c]
    torch.manual_seed(0)
    model = build_model(cls.contract_model, (c, size, size), 10, **cls.contract_model_options)
    obs = observe(model, x, y, mean=[0.5] * c, std=[0.25] * c, share_labels=share_labels)
    return (obs, x, y, model) if with_model else (obs, x, y)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_contract(name, sample_data):
    cls = ATTACKS.get(name)
    assert dataclasses.is_dataclass(cls) and cls.name == name
    assert cls.__doc__ and "Example" in cls.__doc__, (
        "docstring must name the paper and show an example"
    )
    obs, x, y, client_model = _observation(cls, sample_data, with_model=True)
    update_before = {k: v.clone() for k, v in obs.update.items()}

    rec = make_attack(name, progress=False, seed=3, **cls.contract_options).reconstruct(obs)
    assert isinstance(rec, Reconstruction)
    assert rec.images.shape == x.shape and rec.images.dtype == torch.float32
    assert torch.isfinite(rec.images).all() and rec.images.min() >= 0 and rec.images.max() <= 1
    assert rec.labels is None or (len(rec.labels) == len(y) and rec.labels.max() < 10)
    assert all(torch.equal(update_before[k], v) for k, v in obs.update.items()), (
        "observation mutated"
    )

    # the threat model is sealed: what the client does with its model after the round changes
    # nothing the server holds, so the same seed gives the same result
    with torch.no_grad():
        for p in client_model.parameters():
            p.mul_(-2.0)
        for b in client_model.buffers():
            if b.is_floating_point():
                b.add_(3.0)
    client_model.train(not client_model.training)
    again = make_attack(name, progress=False, seed=3, **cls.contract_options).reconstruct(obs)
    assert torch.equal(rec.images, again.images), "same seed must give the same result"


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_option_is_documented(name):
    cls = ATTACKS.get(name)
    for o in cls.describe():
        assert o.help, f"{name}.{o.name} has no help text"
    defaults = {o.name: o.default for o in cls.describe()}
    assert make_attack(name, **{k: v for k, v in defaults.items() if v is not None}) is not None


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
