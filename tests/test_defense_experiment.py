"""The defense experiment: `--quick` end to end (claims table, report, figures, resume), the quick
claims that hold with margin across seeds, and blind choices (never the private images)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gradinv.cli import main
from gradinv.experiments.defenses import cells, quick_settings, run_defense_experiment
from gradinv.experiments.defenses.grid import NONE, Block
from gradinv.report import tables


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("defenses") / "quick"
    code = main(["experiment", "defenses", "--quick", "--out", str(out), "--workers", "2",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    return out


def test_quick_run_writes_a_complete_claims_table_and_report(quick):
    claims = json.loads((quick / "claims.json").read_text())
    assert [c["id"] for c in claims] == ["a", "b", "c", "t"]
    for c in claims:
        assert set(c) == {"id", "claim", "criterion", "measured", "holds"}
        assert isinstance(c["holds"], bool) and c["measured"]
    # claim a is judged per family too: the quick grid prunes (0.3, 0.9) and adds noise (1e-2)
    parts = claims[0]["measured"]["holds_for"]
    assert set(parts) == {"pruning", "noise"} and claims[0]["holds"] == all(parts.values())
    results = json.loads((quick / "results.json").read_text())
    assert results["quick"] and not results["failed_cells"]
    assert len(results["cells"]) == len(cells(quick_settings()))
    report = (quick / "report.md").read_text()
    for name in ("privacy_utility.png", "psnr_vs_strength.png", "reconstructions.png"):
        assert (quick / name).stat().st_size > 5000 and name in report
    assert "| c | DP-SGD" in report and "oracle" in report
    lenet = results["summary"]["lenet"]
    assert lenet["dpsgd:noise=1,clip=1"]["epsilon"] == pytest.approx(4.73, abs=0.01)
    assert lenet[NONE]["accuracy"]["n"] == 1 and lenet[NONE]["update_cosine"]["mean"] == 1.0


def test_quick_claims_that_hold_with_margin(quick):
    """c and t hold at the quick budget with margin across seeds. Measured on the quick grid at
    six seeds (0-5): t's per-seed gains of dlg+aware over dlg were 4.0-15.9 dB (mean 11.0; the
    target is 3 dB; seeds 0 and 1, the ones run here: 10.8 and 10.1); under DP-SGD (σ = 1) every
    attack stayed below the mean-image baseline (DLG 4.0 ± 0.5, GGL 8.4 ± 1.4, baseline
    11.5 ± 1.8 dB). a does not hold and b sits near its threshold at the quick budget (17.6 ± 3.6
    dB against 18): both are reported, not asserted."""
    claims = {c["id"]: c for c in json.loads((quick / "claims.json").read_text())}
    assert claims["c"]["holds"], claims["c"]
    assert claims["t"]["holds"], claims["t"]
    lenet = json.loads((quick / "results.json").read_text())["summary"]["lenet"]
    dp = lenet["dpsgd:noise=1,clip=1"]
    assert max(v["mean"] for v in dp["variants"].values()) < dp["baseline"]["mean"]
    pruned = lenet["prune:ratio=0.9"]
    gains = [a - p for a, p in zip(pruned["best_aware_runs"], pruned["best_plain_runs"],
                                   strict=True)]  # fmt: skip
    assert min(gains) >= 3, gains
    # without a defense DLG recovers the private image: the defenses are what stop it
    assert lenet[NONE]["variants"]["dlg"]["mean"] > 20


def test_resume_reuses_finished_cells_and_out_is_checked_first(quick, capsys):
    before = json.loads((quick / "results.json").read_text())
    # claims.json is there: refused without --overwrite / --resume, before any work
    assert main(["experiment", "defenses", "--quick", "--out", str(quick), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["experiment", "defenses", "--quick", "--out", str(quick), "--resume",
                 "--no-progress"]) == 0  # fmt: skip
    after = json.loads((quick / "results.json").read_text())
    assert [r["metrics"] for r in after["cells"]] == [r["metrics"] for r in before["cells"]]
    (quick.parent / "file").write_text("x")
    assert main(["experiment", "defenses", "--quick", "--out", str(quick.parent / "file")]) == 2
    capsys.readouterr()
    for bad, word in ((["--quick", "--grid", "claims"], "--grid"), (["--seeds", "0"], "--seeds"),
                      (["--grid", "huge"], "claims")):  # fmt: skip
        assert main(["experiment", "defenses", *bad, "--out", str(quick.parent / "x")]) == 2
        err = capsys.readouterr().err
        assert word in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3
    assert not (quick.parent / "x").exists()


def test_results_record_their_command_and_render_as_tables(quick, tmp_path):
    results = json.loads((quick / "results.json").read_text())
    assert results["command"].startswith("gradinv experiment defenses --grid quick --out ")
    target = tmp_path / "docs" / "results" / "defenses"
    target.mkdir(parents=True)
    for name in ("results.json", "claims.json"):
        (target / name).write_text((quick / name).read_text())
    lenet = results["summary"]["lenet"]
    table = tables.defenses(str(tmp_path), None)
    assert table.count("\n| ") == len(lenet) and "4.73" in table and "dlg+aware" in table
    assert results["command"] in table
    aware = tables.defenses_aware(str(tmp_path), None).splitlines()
    assert len([r for r in aware if r.startswith("| `prune:ratio=0.9` | `dlg`")]) == 1
    claims = tables.claims(str(tmp_path), "docs/results/defenses/claims.json")
    assert results["command"] in claims and "| c |" in claims


def test_choices_are_blind_noise_as_truth_selects_the_same(tmp_path, monkeypatch):
    """The chosen attack per seed depends on the matching losses only: with the private images
    replaced by noise for scoring, the same attacks are chosen."""
    import torch

    import gradinv.pipeline as pipeline

    block = Block("lenet", "lenet", {"init": "uniform"}, 1, ("prune:ratio=0.9",),
                  plain={"dlg": None, "ig": None},
                  aware={"dlg": ("prune:ratio=0.9",), "ig": ("prune:ratio=0.9",)})  # fmt: skip
    s = replace(quick_settings(), seeds=(0,), blocks=(block,), generator=None, utility={},
                attack_options={"dlg": {"iterations": 2}, "ig": {"iterations": 10}})  # fmt: skip
    # inline: the cells run in this process, where the patch below applies
    honest = run_defense_experiment(str(tmp_path / "a"), settings=s, engine="inline",
                                    progress=False)  # fmt: skip
    original = pipeline.evaluate

    def noisy(recon, truth, *args):
        gen = torch.Generator().manual_seed(7)
        return original(recon, torch.rand(truth.shape, generator=gen), *args)

    monkeypatch.setattr(pipeline, "evaluate", noisy)
    blind = run_defense_experiment(str(tmp_path / "b"), settings=s, engine="inline",
                                   progress=False)  # fmt: skip
    a, b = (
        honest["summary"]["lenet"]["prune:ratio=0.9"],
        blind["summary"]["lenet"]["prune:ratio=0.9"],
    )
    for key in ("best_chosen", "best_plain_chosen", "best_aware_chosen"):
        assert a[key] == b[key], key
    assert a["best_runs"] != b["best_runs"]  # the scores did change
