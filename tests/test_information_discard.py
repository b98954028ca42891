"""The information-discard experiment: a complete claims table whose claims a-c hold (measured with
the --quick budgets; d-f run with reduced budgets here and are only checked for completeness)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gradinv.cli import main
from gradinv.experiments.information_discard import (
    CLAIM_IDS,
    f_candidates,
    quick_settings,
    run_information_discard,
)


def test_quick_experiment_writes_a_complete_claims_table(tmp_path):
    q = quick_settings()  # a, b, c exactly as in --quick; d-f with tiny budgets
    s = replace(q, fail_iterations=q.adam_iterations, adam_iterations=10, tv_weights=(1e-4, 1e-1),
                batch_sizes=(1, 2), e_tv_weights=(0.0, 1e-6))  # fmt: skip
    s.f_candidates = f_candidates(20)
    result = run_information_discard(str(tmp_path), quick=True, settings=s, workers=2)
    with open(tmp_path / "claims.json") as fh:
        claims = json.load(fh)
    assert [c["id"] for c in claims] == list(CLAIM_IDS)
    for c in claims:
        assert set(c) >= {"id", "claim", "measured", "holds", "criterion"}
        assert isinstance(c["holds"], bool) and c["measured"]
    by_id = {c["id"]: c for c in claims}
    assert by_id["a"]["holds"], by_id["a"]
    assert by_id["a"]["measured"]["psnr"] >= 35
    # b's PSNRs sit near its 25 dB criterion with the quick budget: only its content is checked
    assert min(by_id["b"]["measured"]["psnr_l2"], by_id["b"]["measured"]["psnr_cosine"]) >= 20
    assert by_id["c"]["holds"], by_id["c"]
    assert by_id["c"]["measured"]["psnr"] < 15
    # e and f run on the library's default LeNet (PyTorch init), e with the best TV per batch size
    assert by_id["e"]["measured"]["model"] == "lenet, PyTorch default init"
    assert set(by_id["e"]["measured"]["best_tv_by_batch_size"].values()) <= {0.0, 1e-6}
    assert "PyTorch default init" in by_id["f"]["claim"]
    with open(tmp_path / "results.json") as fh:
        results = json.load(fh)
    assert results["runs"]["a"]["psnr"] == pytest.approx(by_id["a"]["measured"]["psnr"], abs=0.01)
    report = (tmp_path / "report.md").read_text()
    for name in ("a_mlp4_l2.gif", "b_lenet_cosine.gif", "c_lenet_b2_cosine.gif",
                 "d_psnr_vs_iteration.png", "e_psnr_vs_batch.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0
        assert name in report
    assert result["claims"] == claims


def test_unknown_claim_is_a_clear_error(tmp_path, capsys):
    code = main(["experiment", "information-discard", "--claims", "ax", "--out", str(tmp_path)])
    assert code == 2
    assert "unknown claims ['x']" in capsys.readouterr().err


def test_choices_are_blind_noise_as_truth_selects_the_same(tmp_path, monkeypatch):
    """Every choice (TV weight per batch size, the attack of f) is made on the matching loss: with
    the private images replaced by noise for scoring, the same configurations are chosen and the
    same reconstructions come out."""
    import torch

    import gradinv.pipeline as pipeline

    s = replace(quick_settings(), adam_iterations=15, batch_sizes=(1, 2), e_tv_weights=(0.0, 1e-4))
    s.f_candidates = f_candidates(15)
    honest = run_information_discard(
        str(tmp_path / "a"), settings=s, claims=["e", "f"], engine="inline"
    )  # in this process: the patch applies
    original = pipeline.evaluate

    def noisy(recon, truth, *args):
        gen = torch.Generator().manual_seed(7)
        return original(recon, torch.rand(truth.shape, generator=gen), *args)

    monkeypatch.setattr(pipeline, "evaluate", noisy)
    blind = run_information_discard(
        str(tmp_path / "b"), settings=s, claims=["e", "f"], engine="inline"
    )
    e1, e2 = honest["runs"]["e"]["rows"], blind["runs"]["e"]["rows"]
    assert [r["best_tv"] for r in e1] == [r["best_tv"] for r in e2]
    assert [r["matching_loss_by_tv"] for r in e1] == [r["matching_loss_by_tv"] for r in e2]
    for comp in ("unique", "same"):
        m1, m2 = honest["claims"][1]["measured"], blind["claims"][1]["measured"]
        assert m1[f"chosen_{comp}"] == m2[f"chosen_{comp}"]
        c1 = honest["runs"][f"f_{comp}_candidates"]
        c2 = blind["runs"][f"f_{comp}_candidates"]
        assert [c["matching_loss"] for c in c1] == [c["matching_loss"] for c in c2]
