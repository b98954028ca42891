import pytest
import torch

from gradinv.errors import GradinvError
from gradinv.models import MODELS, build_model, parse_option, train_model


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 16, 16)])
def test_every_model_builds_and_classifies(name, shape):
    model = build_model(
        name, shape, 10, **({"width": 8} if name in ("resnet18", "convnet") else {})
    )
    out = model(torch.rand(2, *shape))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_lenet_reference_init_is_uniform():
    model = build_model("lenet", (3, 32, 32), 10, init="uniform")
    values = torch.cat([p.flatten() for p in model.parameters()])
    assert (
        values.min() >= -0.5 and values.max() <= 0.5 and values.std() > 0.25
    )  # U(-.5,.5): std 0.289


def test_options_are_typed_and_checked():
    assert parse_option("mlp4", "width", "64") == 64
    assert (
        build_model("mlp4", (1, 8, 8), 3, width=64, activation="sigmoid")[2].__class__.__name__
        == "Sigmoid"
    )
    with pytest.raises(GradinvError, match="valid options: width, activation"):
        parse_option("mlp4", "depth", "3")
    with pytest.raises(GradinvError, match="must be of type int"):
        parse_option("mlp4", "width", "wide")
    with pytest.raises(GradinvError, match="choose from"):
        build_model("mlp4", (1, 8, 8), 3, activation="swish")
    with pytest.raises(GradinvError, match="unknown model 'vgg'; choose from"):
        build_model("vgg", (3, 32, 32), 10)


def test_train_model_learns(sample_data):
    torch.manual_seed(0)
    model = build_model("convnet", (3, 16, 16), 10, width=8)
    x = sample_data.load(range(0, 640, 7), 16)
    y = torch.as_tensor(sample_data.labels[::7])
    before = torch.nn.functional.cross_entropy(model.eval()(x), y).item()
    train_model(model, sample_data, 3, 16, [0.5] * 3, [0.25] * 3, lr=3e-3, progress=False)
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(model((x - 0.5) / 0.25), y).item()
    assert after < 0.7 * before
