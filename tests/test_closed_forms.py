"""Closed-form attacks (bias, spear, rgap) and the rank analysis: measured exactness and clear errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn

from gradinv.analysis import rank_table
from gradinv.attacks import make_attack
from gradinv.cli import main
from gradinv.errors import GradinvError
from gradinv.fl import Protocol
from gradinv.metrics import evaluate
from gradinv.pipeline import RunConfig, prepare, run


def _run(**kw):
    return run(RunConfig(**kw), progress=False)


# --- bias -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,floor", [("float64", 100.0), ("float32", 60.0)])
def test_bias_attack_is_exact_for_one_photo(dtype, floor):
    result = _run(attack="bias", model="mlp4", model_options={"width": 200}, dtype=dtype, seed=3)
    assert min(result.metrics["psnr_per_image"]) >= floor
    assert result.metrics["info"]["certified_count"] == 1
    assert result.reconstruction.images.min() >= 0 and result.reconstruction.images.max() <= 1


def test_bias_attack_counts_isolated_samples():
    result = _run(attack="bias", model="mlp4", model_options={"width": 300}, batch_size=4)
    psnr = np.array(result.metrics["psnr_per_image"])
    certified = result.metrics["info"]["certified_count"]
    # Every certified sample is exact: at least as many images above 60 dB as certified ones.
    assert 0 < certified <= 4 and (psnr >= 60).sum() >= certified


def test_bias_attack_refuses_a_model_without_linear_first_layer():
    obs, _, _ = prepare(RunConfig(model="lenet", image_size=16))
    with pytest.raises(GradinvError, match="first trainable layer is linear"):
        make_attack("bias").reconstruct(obs)


# --- spear ------------------------------------------------------------------------------------


def test_spear_recovers_a_batch_with_all_labels_equal():
    result = _run(attack="spear", model="mlp4", batch_size=8, composition="same")
    assert len(set(result.labels.tolist())) == 1
    psnr = result.metrics["psnr_per_image"]
    assert min(psnr) >= 60, psnr
    assert result.metrics["info"]["certified"] == [True] * 8


def test_spear_sampling_scheme_recovers_a_small_batch_in_float64():
    result = _run(
        attack="spear", model="mlp4", model_options={"width": 300}, batch_size=4,
        composition="same", dtype="float64", attack_options={"method": "sampling"},
    )  # fmt: skip
    assert min(result.metrics["psnr_per_image"]) >= 60
    assert result.metrics["info"]["certified_count"] == 4


def test_spear_refuses_what_it_cannot_invert():
    obs, _, _ = prepare(
        RunConfig(model="mlp4", model_options={"width": 6}, batch_size=8, image_size=8)
    )
    with pytest.raises(GradinvError, match="exceeds the first layer's width 6"):
        make_attack("spear").reconstruct(obs)
    obs, _, _ = prepare(
        RunConfig(model="mlp4", model_options={"width": 50, "activation": "sigmoid"}, image_size=8)
    )
    with pytest.raises(GradinvError, match="needs a ReLU"):
        make_attack("spear").reconstruct(obs)
    obs, _, _ = prepare(
        RunConfig(model="mlp4", model_options={"width": 50}, image_size=8, batch_size=2)
    )
    bad = replace(obs, update={k: v * float("nan") for k, v in obs.update.items()})
    with pytest.raises(GradinvError, match="NaN"):
        make_attack("spear").reconstruct(bad)
    fedavg = replace(obs, protocol=Protocol("fedavg", local_epochs=2))
    with pytest.raises(GradinvError, match="FedSGD"):
        make_attack("spear").reconstruct(fedavg)
    with pytest.raises(GradinvError, match="method"):
        make_attack("spear", method="magic")


def test_spear_accepts_one_step_fedavg_in_float64():
    config = RunConfig(attack="spear", model="mlp4", model_options={"width": 300}, batch_size=4,
                       composition="same", protocol="fedavg", local_lr=0.1, dtype="float64")  # fmt: skip
    result = run(config, progress=False)
    assert result.metrics["info"]["method"] == "cone"
    assert min(result.metrics["psnr_per_image"]) >= 100


# --- rgap and the rank analysis ---------------------------------------------------------------


def test_rank_table_matches_a_hand_computed_case():
    # One 2x2 stride-2 conv on a 4x4 input: 16 unknowns; 4 forward equations z_p = wᵀ x_block(p)
    # and 4 gradient equations g_δ = Σ_p k_p x[2p+δ]. As 4x4 matrices (block × offset) the rows are
    # e_p wᵀ and k e_δᵀ; their spans meet in k wᵀ only, so rank = 4 + 4 − 1 = 7, deficit 9.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 1, 2, stride=2, bias=False), nn.LeakyReLU(0.2),
                          nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    conv, linear = rank_table(model, (1, 4, 4))
    assert (conv.unknowns, conv.forward_equations, conv.gradient_equations) == (16, 4, 4)
    assert (conv.equations, conv.rank, conv.deficit) == (8, 7, 9)
    # Linear layer: ∇W = k xᵀ alone determines x (rank = input size), 12 + 3 equations.
    assert (linear.unknowns, linear.equations, linear.rank, linear.deficit) == (4, 15, 4, 0)


def test_rgap_inverts_cnn6_where_the_analysis_says_full_rank():
    config = RunConfig(attack="rgap", model="cnn6", image_size=16, labels="joint", seed=1,
                       attack_options={"rank_analysis": True})  # fmt: skip
    torch.manual_seed(0)
    table = rank_table(prepare(config)[0].model.double(), (3, 16, 16))
    assert all(row.deficit == 0 for row in table)
    result = run(config, progress=False)
    assert result.metrics["psnr"] >= 30
    assert result.metrics["info"]["full_rank"] is True
    assert result.metrics["label_accuracy"] == 1.0


def test_rgap_refuses_relu_and_batches():
    obs, _, _ = prepare(RunConfig(model="mlp4", model_options={"width": 20}, image_size=8))
    with pytest.raises(GradinvError, match="invertible activations"):
        make_attack("rgap").reconstruct(obs)
    obs, _, _ = prepare(RunConfig(model="cnn6", image_size=8, batch_size=2))
    with pytest.raises(GradinvError, match="batch of one"):
        make_attack("rgap").reconstruct(obs)


def test_analyze_cli_writes_json_and_refuses_unsupported_models(tmp_path, capsys):
    out = tmp_path / "rank.json"
    assert main(["analyze", "--model", "lenet", "--image-size", "8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [row["kind"] for row in report["layers"]] == ["Conv2d", "Conv2d", "Conv2d", "Linear"]
    for row in report["layers"]:
        assert row["deficit"] == row["unknowns"] - row["rank"]
        assert row["equations"] == row["gradient_equations"] + row["forward_equations"]
    assert "deficit" in capsys.readouterr().out
    assert main(["analyze", "--model", "resnet18", "--image-size", "8"]) == 2
    assert "BatchNorm2d" in capsys.readouterr().err


def test_closed_forms_run_from_the_cli(tmp_path, capsys):
    out = tmp_path / "bias"
    code = main(["attack", "--attack", "bias", "--model", "mlp4", "--model-opt", "width=100",
                 "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["psnr_per_image"][0] >= 60 and metrics["info"]["certified"] == [True]
    again = str(tmp_path / "spear")
    assert main(["attack", "--attack", "spear", "--iterations", "5", "--out", again]) == 2
    assert "not iterative" in capsys.readouterr().err


def test_closed_form_images_are_deterministic_and_valid():
    obs, images, _ = prepare(RunConfig(model="mlp4", model_options={"width": 300}, batch_size=4,
                                       composition="same"))  # fmt: skip
    first = make_attack("spear").reconstruct(obs).images
    second = make_attack("spear").reconstruct(obs).images
    assert torch.equal(first, second) and torch.isfinite(first).all()
    assert min(evaluate(first, images)["psnr_per_image"]) >= 60
