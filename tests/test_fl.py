import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gradinv.errors import GradinvError
from gradinv.fl import Observation, Protocol, aggregate, observe
from gradinv.models import build_model


def _setup(batch=3):
    torch.manual_seed(0)
    model = build_model("lenet", (3, 16, 16), 10)
    x = torch.rand(batch, 3, 16, 16)
    y = torch.tensor([1, 4, 4][:batch])
    return model, x, y


def test_fedsgd_update_is_the_mean_loss_gradient():
    model, x, y = _setup()
    obs = observe(model, x, y, mean=[0.5] * 3, std=[0.2] * 3)
    loss = F.cross_entropy(model((x - 0.5) / 0.2), y)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    for (name, _), g in zip(model.named_parameters(), expected, strict=True):
        assert torch.allclose(obs.update[name], g, atol=1e-6)
    assert obs.labels is None and obs.batch_size == 3  # labels hidden by default


def test_fedavg_update_is_the_weight_delta_of_local_sgd():
    model, x, y = _setup()
    protocol = Protocol("fedavg", local_epochs=2, local_lr=0.1, local_batch_size=2)
    obs = observe(model, x, y, protocol=protocol)
    clone = build_model("lenet", (3, 16, 16), 10)
    clone.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(clone.parameters(), lr=0.1)
    for _ in range(2):
        for s in (slice(0, 2), slice(2, 3)):
            opt.zero_grad()
            F.cross_entropy(clone(x[s]), y[s]).backward()
            opt.step()
    for (name, p0), p1 in zip(model.named_parameters(), clone.parameters(), strict=True):
        assert torch.allclose(obs.update[name], p1 - p0, atol=1e-5)


def test_client_model_is_untouched_including_batchnorm_stats():
    model = build_model("resnet18", (3, 16, 16), 10, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    observe(model, torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_aggregate_fedsgd_equals_union_batch():
    model, x, y = _setup()
    a = observe(model, x[:2], y[:2], share_labels=True)
    b = observe(model, x[2:], y[2:], share_labels=True)
    both = observe(model, x, y, share_labels=True)
    agg = aggregate([a, b])
    assert agg.batch_size == 3 and agg.num_clients == 2 and agg.labels.tolist() == y.tolist()
    for k in both.update:
        assert torch.allclose(agg.update[k], both.update[k], atol=1e-6)


def test_save_load_roundtrip_uses_no_pickle(tmp_path):
    model, x, y = _setup()
    obs = observe(model, x, y, share_labels=True, model_spec={"name": "lenet", "options": {}})
    obs.save(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "observation.json",
        "observation.safetensors",
    ]
    back = Observation.load(str(tmp_path))  # rebuilt from the spec
    assert back.labels.tolist() == y.tolist() and back.batch_size == 3
    assert all(torch.equal(back.update[k], obs.update[k]) for k in obs.update)


def test_load_rejects_corrupt_and_incomplete_files(tmp_path):
    model, x, y = _setup()
    observe(model, x, y, model_spec={"name": "lenet", "options": {}}).save(str(tmp_path))
    (tmp_path / "observation.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(GradinvError, match="corrupt observation"):
        Observation.load(str(tmp_path))
    with pytest.raises(GradinvError, match="missing"):
        Observation.load(str(tmp_path / "nothing"))


def test_load_rejects_wrong_model(tmp_path):
    model, x, y = _setup()
    observe(model, x, y).save(str(tmp_path))
    meta = json.loads((tmp_path / "observation.json").read_text())
    assert meta["model_spec"] is None
    with pytest.raises(GradinvError, match="custom model"):
        Observation.load(str(tmp_path))
    other = build_model("lenet", (3, 32, 32), 10)
    with pytest.raises(GradinvError, match="shape mismatch"):
        Observation.load(str(tmp_path), model=other)


def test_validate_rejects_nan_gradients_and_bad_labels():
    model, x, y = _setup()
    obs = observe(model, x, y, share_labels=True)
    obs.update["4.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(GradinvError, match="NaN or Inf"):
        obs.validate()
    obs = observe(model, x, y, share_labels=True)
    obs.labels = torch.tensor([0, 1])
    with pytest.raises(GradinvError, match="2 labels for batch size 3"):
        obs.validate()


def test_any_user_module_works():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)

        def forward(self, x):
            return self.fc(x.flatten(1))

    obs = observe(Tiny(), torch.rand(2, 3, 2, 2), torch.tensor([0, 2]))
    assert obs.num_classes == 3 and set(obs.update) == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize("bad", [
    lambda: Protocol("fedprox"),
    lambda: Protocol("fedavg", local_epochs=0),
    lambda: Protocol("fedavg", local_lr=-1),
    lambda: observe(nn.Linear(4, 2), torch.rand(0, 1, 2, 2), torch.tensor([], dtype=torch.long)),
])  # fmt: skip
def test_bad_protocols_and_batches(bad):
    with pytest.raises(GradinvError):
        bad()


def test_an_attack_leaves_the_model_untouched_even_without_shared_buffers():
    from gradinv.attacks import make_attack

    model = build_model("convnet", (3, 16, 16), 10, width=4).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    obs = observe(model, torch.rand(2, 3, 16, 16), torch.tensor([0, 1]), share_buffers=False)
    make_attack("ig", iterations=3, progress=False).reconstruct(obs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
