"""The information-discard experiment: a complete claims table whose claims a-c hold (measured with
the --quick budgets; d-f run with reduced budgets here and are only checked for completeness)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gradinv.cli import main
from gradinv.experiments.information_discard import (
    CLAIM_IDS,
    quick_settings,
    run_information_discard,
)


def test_quick_experiment_writes_a_complete_claims_table(tmp_path):
    q = quick_settings()  # a, b, c exactly as in --quick; d-f with tiny budgets
    s = replace(q, fail_iterations=q.adam_iterations, adam_iterations=10, tv_weights=(1e-4, 1e-1),
                batch_sizes=(1, 2), e_tv_weights=(0.0, 1e-6))  # fmt: skip
    s.f_config = replace(s.f_config, iterations=2)
    result = run_information_discard(str(tmp_path), quick=True, settings=s)
    with open(tmp_path / "claims.json") as fh:
        claims = json.load(fh)
    assert [c["id"] for c in claims] == list(CLAIM_IDS)
    for c in claims:
        assert set(c) >= {"id", "claim", "measured", "holds", "criterion"}
        assert isinstance(c["holds"], bool) and c["measured"]
    by_id = {c["id"]: c for c in claims}
    assert by_id["a"]["holds"], by_id["a"]
    assert by_id["a"]["measured"]["psnr"] >= 35
    assert by_id["b"]["holds"], by_id["b"]
    assert min(by_id["b"]["measured"]["psnr_l2"], by_id["b"]["measured"]["psnr_cosine"]) >= 25
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
