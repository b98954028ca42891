"""Defenses end to end: the CLI (`list`, `--defense` on `attack` and `observe`), what the
observation and metrics.json record (ε, δ), secure-aggregation scoring, and defense-aware matching
that differs from the plain one only through the recorded defenses."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from gradinv.attacks import DISTANCES, Reconstruction, make_attack
from gradinv.attacks.engine import Problem
from gradinv.cli import main
from gradinv.defenses import parse_defense
from gradinv.fl import Observation, observe
from gradinv.models import build_model
from gradinv.pipeline import RunConfig, run, score

try:
    import opacus  # noqa: F401

    HAS_OPACUS = True
except ImportError:  # pragma: no cover - the extra is optional
    HAS_OPACUS = False
needs_opacus = pytest.mark.skipif(not HAS_OPACUS, reason="opacus extra not installed")

SMALL = ["--model", "mlp4", "--model-opt", "width=32", "--image-size", "8", "--no-progress"]


def test_list_shows_defenses_and_their_options(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "defenses (--defense" in out
    for name in ("noise", "prune", "sign", "quantize", "soteria", "precode", "dpsgd"):
        assert f"\n  {name} " in out, name
    assert main(["list", "--options", "prune"]) == 0
    out = capsys.readouterr().out
    assert "--defense prune:KEY=VALUE" in out and "ratio = 0.9" in out and "scope" in out
    assert main(["list", "--options", "sign"]) == 0  # no options: said so
    assert "(none)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["attack", "observe"])
@pytest.mark.parametrize(
    "spec, words",
    [("prune:ratio=2", "[0, 1]"), ("nope", "choose from"), ("noise:std", "KEY=VALUE"),
     ("prune:scope=layer", "tensor, global")],
)  # fmt: skip
def test_bad_defense_specs_are_one_line_exit_2_before_any_work(command, spec, words, tmp_path,
                                                               capsys):  # fmt: skip
    out = tmp_path / "out"
    args = [command, "--defense", spec, "--out", str(out), *SMALL]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert not out.exists()


def test_attack_with_a_defense_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = ["attack", "--attack", "dlg", "--iterations", "2", "--defense", "prune:ratio=0.9",
            "--defense", "noise:std=0.001", "--attack-opt", "defense_aware=true", "--out", str(out),
            *SMALL]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["defenses"] == ["prune:ratio=0.9", "noise:std=0.001"]
    assert metrics["info"]["defense_aware"] == ["prune", "noise"]
    assert "epsilon" not in metrics  # no formal guarantee without DP-SGD


@needs_opacus
def test_dpsgd_epsilon_reaches_the_observation_and_metrics(tmp_path):
    obs_dir, truth = tmp_path / "obs", tmp_path / "truth.safetensors"
    args = ["observe", "--defense", "dpsgd:noise=2,clip=1", "--out", str(obs_dir),
            "--truth-out", str(truth), *SMALL]  # fmt: skip
    assert main(args) == 0
    meta = json.loads((obs_dir / "observation.json").read_text())
    assert meta["defenses"] == [
        {"name": "dpsgd", "clip": 1.0, "noise": 2.0, "delta": 1e-5, "sample_rate": 1.0}
    ]
    eps = meta["privacy"]["epsilon"]
    assert 0 < eps < 10 and meta["privacy"]["delta"] == 1e-5
    loaded = Observation.load(str(obs_dir))
    assert loaded.defenses == meta["defenses"] and loaded.privacy["epsilon"] == eps
    # scored and unscored attacks of the saved observation both report (ε, δ)
    for extra, name in (([], "unscored"), (["--truth", str(truth)], "scored")):
        out = tmp_path / name
        attack = ["attack", "--attack", "dlg", "--iterations", "1", "--observation", str(obs_dir),
                  "--out", str(out), "--no-progress", *extra]  # fmt: skip
        assert main(attack) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["epsilon"] == pytest.approx(eps) and metrics["delta"] == 1e-5, name
    # a simulated round too; σ = 0 has no finite ε: null in JSON, never Infinity
    result = run(RunConfig(attack="dlg", model="mlp4", model_options={"width": 32}, image_size=8,
                           iterations=1, defenses=["dpsgd:noise=0"]), progress=False)  # fmt: skip
    assert result.metrics["epsilon"] is None and result.metrics["privacy"]["noise_multiplier"] == 0
    json.dumps(result.metrics, allow_nan=False)


def test_secure_aggregation_is_scored_against_all_k_times_b_images():
    # Under FedSGD the aggregate of K clients is the union batch's gradient: SPEAR inverts all
    # K·B = 4 images from it, and the score matches them to the union (Hungarian assignment).
    config = RunConfig(attack="spear", model="mlp4", batch_size=2, clients=2, image_size=16,
                       secure_aggregation=True, composition="random")  # fmt: skip
    result = run(config, progress=False)
    m = result.metrics
    assert result.observation.secure_aggregation and result.observation.labels is None
    assert result.images.shape[0] == 4 and len(m["psnr_per_image"]) == 4
    assert sorted(m["assignment"]) == [0, 1, 2, 3] and m["secure_aggregation"] is True
    assert min(m["psnr_per_image"]) > 60, m["psnr_per_image"]
    # the assignment undoes any order the attack returns the images in
    images = result.images
    perm = torch.tensor([2, 0, 3, 1])
    rec = Reconstruction(images=images[perm])
    scored = score(config, rec, images, result.labels, 0.0)
    assert [int(perm[i]) for i in scored["assignment"]] == [0, 1, 2, 3]
    assert min(scored["psnr_per_image"]) == pytest.approx(300)


def _pruned_observation() -> tuple[Observation, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("lenet", (1, 12, 12), 10)
    x, y = torch.rand(1, 1, 12, 12), torch.tensor([3])
    defenses = [parse_defense("prune:ratio=0.9")]
    return observe(model, x, y, share_labels=True, defenses=defenses), x, y


def test_defense_aware_matching_differs_from_plain_only_through_the_recorded_defenses():
    obs, x, y = _pruned_observation()
    aware = Problem.build(obs, "auto", defense_aware=True)
    plain = Problem.build(obs, "auto")
    cosine = DISTANCES.get("cosine")
    truth = obs.normalize(x)[None]
    d_aware = float(cosine(aware.simulator(truth, y), aware.simulator.target)[0].detach())
    d_plain = float(cosine(plain.simulator(truth, y), plain.simulator.target)[0].detach())
    # the true image explains the pruned observation exactly once the pruning is simulated; the
    # plain distance also counts the 90 % of its gradient that the client zeroed
    assert d_aware < 1e-5 and d_plain > 0.05, (d_aware, d_plain)
    assert aware.info == {"defense_aware": ["prune"]} and plain.info == {}
    # with the defenses removed from the record, defense-aware is the plain attack, bit for bit
    blind = replace(obs, defenses=[])
    a = make_attack("dlg", iterations=2, defense_aware=True, progress=False).reconstruct(blind)
    b = make_attack("dlg", iterations=2, progress=False).reconstruct(obs)
    assert torch.equal(a.images, b.images) and a.loss_history == b.loss_history
    assert "defense_aware" not in a.info
    # and with them, it is not
    c = make_attack("dlg", iterations=2, defense_aware=True, progress=False).reconstruct(obs)
    assert not torch.equal(c.images, b.images) and c.info["defense_aware"] == ["prune"]
