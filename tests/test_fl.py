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


def test_load_rebuilds_built_in_models_and_needs_custom_ones(tmp_path):
    model, x, y = _setup()
    obs = observe(model, x, y)
    obs.save(str(tmp_path / "builtin"))
    again = Observation.load(str(tmp_path / "builtin"))  # no model passed: rebuilt from the spec
    assert all(torch.equal(again.update[k], v) for k, v in obs.update.items())
    with pytest.raises(GradinvError, match="shape mismatch"):
        Observation.load(str(tmp_path / "builtin"), model=build_model("lenet", (3, 32, 32), 10))
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
    observe(tiny, x, y).save(str(tmp_path / "custom"))
    with pytest.raises(GradinvError, match="custom model"):
        Observation.load(str(tmp_path / "custom"))
    assert Observation.load(str(tmp_path / "custom"), model=tiny).num_classes == 10


def test_observation_is_sealed_from_the_client_model():
    """The server's copy is its own: changing the client's module after the round changes
    nothing the server holds (parameters, buffers, mode)."""
    model = build_model("convnet", (3, 16, 16), 10, width=4)
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    obs = observe(model, x, y, share_buffers=False, train_mode=False)
    assert obs.model is not model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        for b in model.buffers():
            if b.is_floating_point():
                b.add_(5.0)
    model.train()
    for name, p in obs.model.named_parameters():
        assert torch.equal(p, obs.parameters.get(name, obs.frozen.get(name)))
    # BatchNorm statistics the server was not given are the defaults, not the client's
    bn = obs.model[1]
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_frozen_parameters_are_part_of_the_observation(tmp_path):
    model, x, y = _setup()
    model[0].weight.requires_grad_(False)
    obs = observe(model, x, y)
    assert "0.weight" in obs.frozen and "0.weight" not in obs.update
    obs.save(str(tmp_path))
    again = Observation.load(str(tmp_path))
    assert torch.equal(again.frozen["0.weight"], model[0].weight)


@pytest.mark.parametrize("bad, message", [
    (dict(labels=torch.tensor([1.0, 2.0, 3.0])), "integer class indices"),
    (dict(std=[0.0, 1.0, 1.0]), "std must be finite and > 0"),
    (dict(std=[float("nan"), 1.0, 1.0]), "std must be finite and > 0"),
    (dict(mean=[float("inf"), 0.0, 0.0]), "mean must be finite"),
    (dict(labels=torch.tensor([1, 4, 12])), "labels outside"),
])  # fmt: skip
def test_observe_refuses_bad_inputs(bad, message):
    model, x, y = _setup()
    kwargs = {"labels": y, **bad}
    labels = kwargs.pop("labels")
    with pytest.raises(GradinvError, match=message):
        observe(model, x, labels, **kwargs)


def test_nan_parameters_are_refused():
    model, x, y = _setup()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(GradinvError, match="NaN or Inf"):
        observe(model, x, y)


def test_the_training_loss_is_part_of_the_protocol(tmp_path):
    model, x, y = _setup()
    obs = observe(model, x, y, protocol=Protocol(loss="mse"))
    loss = F.mse_loss(model(x), F.one_hot(y, 10).float())
    expected = torch.autograd.grad(loss, list(model.parameters()))
    for (name, _), g in zip(model.named_parameters(), expected, strict=True):
        assert torch.allclose(obs.update[name], g, atol=1e-6)
    obs.save(str(tmp_path / "mse"))
    assert Observation.load(str(tmp_path / "mse")).protocol.loss == "mse"

    def smooth(logits, targets):
        return F.cross_entropy(logits, targets, label_smoothing=0.1)

    custom = observe(model, x, y, protocol=Protocol(loss=smooth))
    custom.save(str(tmp_path / "custom"))
    with pytest.raises(GradinvError, match="custom loss"):
        Observation.load(str(tmp_path / "custom"))
    assert Observation.load(str(tmp_path / "custom"), loss=smooth).protocol.loss is smooth
    with pytest.raises(GradinvError, match="unknown loss"):
        Protocol(loss="hinge")


def test_secure_aggregation_hides_sizes_and_labels():
    model, x, y = _setup()
    a = observe(model, x[:2], y[:2], share_labels=True)
    b = observe(model, x[2:], y[2:], share_labels=True)
    agg = aggregate([a, b], secure=True)
    assert agg.labels is None and agg.batch_size == 3 and agg.secure_aggregation


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
