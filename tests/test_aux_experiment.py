"""The aux-distribution experiment: the quick run's claims (i) and (ii), its outputs and resume,
and that no private image is in the generator's training set."""

import json
import os

import pytest

from gradinv.data import load_dataset
from gradinv.data.formats import FASHION_MNIST_DIR
from gradinv.errors import GradinvError
from gradinv.experiments.aux_distribution import (
    IN_DISTRIBUTION,
    MIXTURE,
    quick_settings,
    run_aux_distribution,
)

pytestmark = pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR), reason="dataset-fashion-mnist absent"
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("aux") / "run")
    return out, run_aux_distribution(out, quick=True)


def test_quick_claims_i_and_ii_as_measured(quick):
    """Claims (i) and (ii) for gias, as the quick run measures them on an untrained LeNet (see
    docs/generative.md): pixel IG is exact at B=1 and near-exact for four distinct labels, so the
    generator's range caps gias below it — (i) does not hold pooled; a generative *start* for IG
    (`gias+ig`) does beat IG in distribution. Margins sit below the quick runs on other private
    batches (private-batch seeds 0-3, 4-7 and 8-11; docs/generative.md)."""
    _, result = quick
    claims = {c["id"]: c for c in result["claims"]}
    i, ii = claims["i"]["measured"], claims["ii"]["measured"]
    assert i["n_images"] >= 12 and set(ii["ood_delta_db"]) == {"digits@test"}
    # (i) as the post states it fails here, robustly: IG reaches 50 dB (capped) at B=1
    # (measured: interval tops -5.8, -8.6, -10.5; B=1 -25.7, -24.6, -24.7; B=4 distinct -15.8,
    # -20.0, -25.6 dB)
    assert not claims["i"]["holds"] and i["ci95"][1] < -2.0, i
    assert i["delta_db_by_case"]["b1"] < -10.0 and i["delta_db_by_case"]["b4-unique"] < -5.0, i
    # ... while the generator as IG's start beats IG in distribution (measured +4.95, +2.64,
    # +1.20 dB on the three seed ranges)
    assert i["every_attack_delta_db"]["gias+ig"] > 0.5, i
    # (ii) fails too: gias loses less to IG on digits than in distribution (perhaps because the
    # blurry upscaled digits are easier to approximate than garments); measured gaps +4.8, +7.0,
    # +9.0 dB
    assert not claims["ii"]["holds"]
    assert ii["ood_delta_db"]["digits@test"] - ii["in_distribution_delta_db"] > 2.0, ii


def test_quick_run_covers_every_cell_with_four_images(quick):
    out, result = quick
    assert not result["failed_cells"]
    s = quick_settings()
    rows = result["rows"]
    for spec in s.sets:
        for case in ("b1", "b4-unique", "b4-same"):
            for attack in ("ig", "gias", "gias+ig", "hybrid"):
                row = [
                    r for r in rows if (r["set"], r["case"], r["attack"]) == (spec, case, attack)
                ]
                assert len(row) == 1 and row[0]["n"] >= 4, (spec, case, attack)
            assert os.path.isfile(os.path.join(out, result["grids"][f"{spec} {case}"]))
    pooled = {(r["set"], r["attack"]): r for r in result["pooled"]}
    ig = pooled[(IN_DISTRIBUTION, "ig")]
    assert ig["delta_ig"] == 0 and 0 <= ig["ssim"] <= 1
    with open(os.path.join(out, "results.json")) as fh:
        saved = json.load(fh)
    assert saved["command"].startswith("gradinv experiment aux-distribution --quick")
    with open(os.path.join(out, "claims.json")) as fh:
        assert json.load(fh) == result["claims"]


def test_quick_run_resumes_without_rerunning_and_refuses_to_mix(quick, monkeypatch):
    out, result = quick
    with pytest.raises(GradinvError, match="--resume"):
        run_aux_distribution(out, quick=True)

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr("gradinv.pipeline.run", fail)
    again = run_aux_distribution(out, quick=True, resume=True, engine="inline")
    assert again["claims"] == result["claims"] and again["rows"] == result["rows"]


def test_no_private_image_is_in_a_generators_training_set():
    """By content hash: the quick generator's and the mixture generator's training images (every
    component's @train split) share nothing with any private set of the experiment."""
    from gradinv.data.mixture import mixture_parts

    s = quick_settings()
    private: set[str] = set()
    for spec in {*s.sets, "digits@test", "lfw@test", "sample@test"}:
        private |= set(load_dataset(spec).content_hashes())
    assert len(private) > 10_000
    training = {s.aux.data, *(name for name, _ in mixture_parts(MIXTURE))}
    for spec in training:
        assert spec.endswith("@train")
        assert not private & set(load_dataset(spec).content_hashes()), spec


def test_cli_refuses_contradicting_presets(tmp_path, capsys):
    from gradinv.cli import main

    args = ["experiment", "aux-distribution", "--out", str(tmp_path / "x"), "--no-progress"]
    assert main([*args, "--quick", "--preset", "reduced"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main([*args, "--preset", "huge"]) == 2
    assert not (tmp_path / "x").exists()
