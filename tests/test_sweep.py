"""gradinv sweep: grid files, results.jsonl, both engines, resume after a SIGKILL of the driver.

Cells are tiny real attack runs (DLG, 2 iterations, mlp4 of width 50, 8x8 images), so the file
measures the machinery, not the attack: about 1 s per cell once a worker is warm.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import gradinv
from gradinv.cli import main
from gradinv.errors import GradinvError
from gradinv.sweep import Grid, load_grid, read_records, read_results, run_sweep
from gradinv.sweep.procs import session_pids

BASE = {"attack": "dlg", "model": "mlp4", "model_options": {"width": 50}, "image_size": 8,
        "iterations": 2}  # fmt: skip
GRID = {"base": BASE, "grid": {"attack_options.lr": [1.0, 0.5], "seed": [0, 1]}}
KILL_AFTER = 1  # cells recorded before the driver is SIGKILLed
SRC = str(Path(gradinv.__file__).resolve().parents[1])


def _write_grid(path: Path, data: dict = GRID) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _numbers(records: dict) -> dict:
    """What must be identical between runs: everything but the wall-clock time."""
    out = {}
    for cell, record in records.items():
        metrics = {k: v for k, v in record["metrics"].items() if k != "time_s"}
        out[cell] = (record["config"], metrics)
    return out


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "RAY_USAGE_STATS_ENABLED": "0", "CI": "true"}  # fmt: skip


def _strays(out: Path) -> list[int]:
    """Live processes started by any run of the sweep in `out` (they carry its session token)."""
    sessions = (out / ".sweep" / "sessions").read_text().split()
    return session_pids(sessions)


def _files(cell_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cell_dir.iterdir()}


# ---------------------------------------------------------------- grid files


def test_grid_expands_in_file_order_with_stable_ids():
    grid = Grid.from_dict(GRID)
    cells = grid.cells()
    assert len(cells) == len(grid) == 4
    assert [(c.swept["attack_options.lr"], c.swept["seed"]) for c in cells] == [
        (1.0, 0), (1.0, 1), (0.5, 0), (0.5, 1)]  # fmt: skip
    first = cells[0]
    assert first.config["attack_options"] == {"lr": 1.0} and first.config["model_options"] == {
        "width": 50
    }
    # every RunConfig setting is in the cell's config, so a cell reruns from its line alone
    from dataclasses import fields

    from gradinv.pipeline import RunConfig

    assert set(first.config) == {f.name for f in fields(RunConfig)}
    RunConfig(**first.config)
    assert first.id.startswith("lr-1.0_seed-0_")
    assert [c.id for c in Grid.from_dict(GRID).cells()] == [c.id for c in cells]
    assert len({c.id for c in cells}) == 4


def test_yaml_exponents_are_numbers(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("base: {attack: ig}\ngrid:\n  attack_options.tv: [0, 1e-4, 1.5E+2]\n")
    values = load_grid(str(path)).axes["attack_options.tv"]
    assert values == [0, 1e-4, 150.0] and isinstance(values[1], float)


@pytest.mark.parametrize("data, message", [
    ({"base": {"atack": "dlg"}}, "unknown setting 'atack'; valid settings: attack, model, "),
    ({"grid": {"sed": [0]}}, "unknown setting 'sed'; valid settings: attack, model, "),
    ({"grid": {"seed": 3}}, "grid setting 'seed' must be a list of values"),
    ({"grid": {"seed": []}}, "grid setting 'seed' has an empty list of values"),
    ({"grid": {"seed": [0, 1, 0]}}, "lists the value 0 twice"),
    ({"grid": {"attack_options": [{"lr": 1}], "attack_options.lr": [2]}}, "sweep one of them"),
    ({"grid": {"seed.x": [1]}}, "setting 'seed' is not a dict"),
    ({"grids": {}}, "unknown top-level key 'grids'"),
])  # fmt: skip
def test_bad_grids_are_one_line_errors(data, message):
    with pytest.raises(GradinvError) as info:
        Grid.from_dict(data).cells()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_rejects_a_bad_grid_before_any_work(tmp_path, capsys):
    grid = _write_grid(tmp_path / "g.yaml", {"base": BASE, "grid": {"seeds": [0, 1]}})
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown setting 'seeds'" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
    # a typo in a name is caught for every cell before the first one runs
    grid = _write_grid(tmp_path / "h.yaml", {"base": BASE, "grid": {"attack": ["dlg", "dgl"]}})
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "unknown attack 'dgl'" in capsys.readouterr().err


# ---------------------------------------------------------------- cells with custom functions


def fake_cell(config: dict, out: str) -> dict:
    """A cell that is not an attack (experiments bring their own): fails for x == 2."""
    if config["x"] == 2:
        raise GradinvError("x must not be 2")
    Path(out, "note.txt").write_text(str(config["x"]))
    return {"psnr": 10.0 * config["x"] + config["seed"], "time_s": 0.0}


def test_custom_cells_failures_and_refusal_of_a_used_directory(tmp_path, capsys):
    grid = Grid(base={"x": 0}, axes={"x": [1, 2, 3], "seed": [0, 1]}, settings=None)
    out = tmp_path / "s"
    result = run_sweep(grid, str(out), workers=2, cell_fn=fake_cell, check_fn=None,
                       progress=False)  # fmt: skip
    assert len(result.records) == 6 and len(result.failed) == 2 and not result.succeeded
    records = read_results(str(out))
    for cell in grid.cells():
        record = records[cell.id]
        if cell.config["x"] == 2:
            assert record == {"cell": cell.id, "config": cell.config, "error": "x must not be 2"}
            assert not (out / "cells" / cell.id).exists()
        else:
            assert record["metrics"]["psnr"] == 10.0 * cell.config["x"] + cell.config["seed"]
            assert (out / "cells" / cell.id / "note.txt").read_text() == str(cell.config["x"])
    summary = (out / "summary.md").read_text()
    assert "| x | cells | failed | psnr | ssim | time_s |" in summary
    assert "| 1 | 2/2 | 0 | 10.5 ± 0.71 |" in summary and "| 2 | 0/2 | 2 |" in summary
    assert (out / "plots" / "psnr_vs_x.png").stat().st_size > 1000
    assert _strays(out) == []
    with pytest.raises(GradinvError, match="not empty; use --resume"):
        run_sweep(grid, str(out), cell_fn=fake_cell, check_fn=None, progress=False)

    # a crash between a cell's rename and its line, and a half-written cell: --resume records
    # the first from its directory (not recomputed) and removes the second
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if "error" not in json.loads(line))
    lost = json.loads(lines[first])["cell"]  # a successful cell (two workers: any order)
    (out / "results.jsonl").write_text(
        "".join(lines[:first] + lines[first + 1 :]) + '{"cell": "torn'
    )
    stamp = _files(out / "cells" / lost)
    (out / "cells" / ".tmp-half").mkdir()
    (out / "cells" / "no-record").mkdir()
    ok = Grid(base={"x": 0}, axes={"x": [1, 3], "seed": [0, 1]}, settings=None)
    again = run_sweep(ok, str(out), resume=True, cell_fn=fake_cell, check_fn=None, progress=False)
    assert again.succeeded and again.skipped == 4
    assert read_results(str(out))[lost] == json.loads(lines[first])
    assert _files(out / "cells" / lost) == stamp
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(
        c.id for c in grid.cells() if c.config["x"] != 2
    )


def test_a_directory_serves_one_driver_at_a_time(tmp_path):
    from gradinv.sweep.procs import SweepLock

    first = SweepLock(str(tmp_path))
    first.acquire()
    with pytest.raises(
        GradinvError, match=f"in use by another running sweep \\(pid {os.getpid()}\\)"
    ):
        SweepLock(str(tmp_path)).acquire()
    first.release()
    SweepLock(str(tmp_path)).acquire()


# ---------------------------------------------------------------- real attack cells


@pytest.fixture(scope="module")
def reference():
    """Every cell of GRID run directly with `pipeline.run`, uninterrupted, in this process (one
    thread, as the sweep's workers): the numbers every sweep must reproduce."""
    from gradinv.pipeline import RunConfig, run

    # the sweep records its thread count (--threads, default 1) in every cell's config
    grid = Grid.from_dict({**GRID, "base": {**BASE, "threads": 1}})
    return {
        cell.id: {"config": cell.config,
                  "metrics": run(RunConfig(**cell.config), progress=False).metrics}
        for cell in grid.cells()
    }  # fmt: skip


def _sweep_cmd(grid: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gradinv", "sweep", str(grid), "--out", str(out),
            "--workers", "2", "--no-progress", *extra]  # fmt: skip


def _kill_after(cmd: list[str], results: Path, k: int, timeout: float = 240) -> None:
    """Start a driver, SIGKILL it once k cells are recorded."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while len(read_records(str(results))) < k:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no cells recorded in time"
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()


def _resume_after_sigkill(tmp_path: Path, engine: str) -> tuple[Path, dict]:
    """Kill a sweep's driver with SIGKILL after KILL_AFTER cells, then --resume it; checks that
    finished cells were not recomputed and nothing lingers. Returns DIR and the final records."""
    grid = _write_grid(tmp_path / "grid.yaml")
    out = tmp_path / "out"
    _kill_after(_sweep_cmd(grid, out, "--engine", engine), out / "results.jsonl", KILL_AFTER)
    finished = read_results(str(out))
    assert len(finished) >= KILL_AFTER
    before = {cell: _files(out / "cells" / cell) for cell in finished}
    prefix = (out / "results.jsonl").read_bytes()

    done = subprocess.run(_sweep_cmd(grid, out, "--engine", engine, "--resume"), env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ran, skipped = map(
        int, re.search(r"\((\d+) this run, (\d+) already done\)", done.stdout).groups()
    )
    # a cell a worker completed just after the kill is recorded from its directory, not rerun
    assert skipped >= len(finished) and ran + skipped == 4, done.stdout
    for cell, files in before.items():  # finished cells untouched, one line each
        assert _files(out / "cells" / cell) == files, cell
    assert (out / "results.jsonl").read_bytes().startswith(prefix)
    records = read_records(str(out))
    assert len(records) == 4 and len({r["cell"] for r in records}) == 4
    assert not list((out / "cells").glob(".tmp-*"))
    assert _strays(out) == []  # the killed driver's leftovers were cleaned up, nothing new lingers
    return out, read_results(str(out))


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    return _resume_after_sigkill(tmp_path_factory.mktemp("local"), "local")


def test_local_resume_after_sigkill_reproduces_an_uninterrupted_run(local_sweep, reference):
    assert _numbers(local_sweep[1]) == _numbers(reference)


def test_results_jsonl_schema_reports_and_summary(local_sweep):
    out, _ = local_sweep
    lines = (out / "results.jsonl").read_text().splitlines()
    cells = {c.id: c for c in load_grid(str(out / "grid.yaml")).cells()}
    assert sorted(json.loads(line)["cell"] for line in lines) == sorted(cells)
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"cell", "config", "metrics"}
        assert record["config"] == cells[record["cell"]].config
        cell_dir = out / "cells" / record["cell"]
        assert json.loads((cell_dir / "metrics.json").read_text()) == record["metrics"]
        assert yaml.safe_load((cell_dir / "config.yaml").read_text()) == record["config"]
        for name in ("reconstruction.png", "progress.gif", "curve.png"):
            assert (cell_dir / name).stat().st_size > 0
    summary = (out / "summary.md").read_text()
    assert "| attack_options.lr | cells | failed | psnr | ssim | time_s |" in summary
    assert "| 1.0 | 2/2 | 0 |" in summary and "| 0.5 | 2/2 | 0 |" in summary
    assert (out / "plots" / "psnr_vs_attack_options.lr.png").exists()


def test_ray_resume_after_sigkill_matches_the_local_engine(tmp_path, reference, local_sweep):
    pytest.importorskip("ray.tune")
    out, records = _resume_after_sigkill(tmp_path, "ray")
    assert (out / "ray" / "run-0" / "tuner.pkl").exists()  # Tune's own state, restored on resume
    assert _numbers(records) == _numbers(reference) == _numbers(local_sweep[1])


def _default_sigint() -> None:
    # a Ctrl-C as a terminal gives it: SIGINT neither ignored nor blocked in the driver, whatever
    # an earlier test left in this pytest worker (ignored and blocked signals survive exec)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_results_and_exits_130(tmp_path):
    # cells long enough (and enough of them) that the signal lands while some are still running
    # (IG's Adam runs every iteration; DLG's L-BFGS may stop early when it stalls)
    slow = {"base": {**BASE, "attack": "ig", "iterations": 3000},
            "grid": {**GRID["grid"], "seed": [0, 1, 2, 3]}}  # fmt: skip
    grid = _write_grid(tmp_path / "grid.yaml", slow)
    out = tmp_path / "out"
    proc = subprocess.Popen(_sweep_cmd(grid, out), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.monotonic() + 240
    while not read_records(str(out)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    # Ctrl-C, pressed again every 2 s until the driver ends, as an impatient user would
    stdout = err = ""
    for _ in range(30):
        proc.send_signal(signal.SIGINT)
        try:
            stdout, err = proc.communicate(timeout=2)
            break
        except subprocess.TimeoutExpired:
            continue
    assert proc.returncode == 130, (stdout[-1000:], err[-2000:], len(read_records(str(out))))
    assert "interrupted" in err and "Traceback" not in err
    assert 1 <= len(read_records(str(out))) < 8
    assert (out / "summary.md").exists() and _strays(out) == []
    assert not list((out / "cells").glob(".tmp-*"))  # the killed cells left nothing behind


def test_ray_is_optional_and_never_imported_by_gradinv(tmp_path, monkeypatch):
    code = "import sys, gradinv, gradinv.sweep, gradinv.cli; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True, timeout=120)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "gradinv.sweep.engines.ray", raising=False)
    grid = Grid.from_dict({"base": BASE})
    with pytest.raises(
        GradinvError, match=r"^the ray engine needs Ray: pip install 'gradinv\[ray\]'$"
    ):
        run_sweep(grid, str(tmp_path / "r"), engine="ray", progress=False)
    assert not (tmp_path / "r").exists()


def test_cli_exits_1_when_cells_fail(tmp_path, capsys):
    # batch 11 and 12 of distinct labels from 10 classes: a GradinvError inside each cell
    grid = _write_grid(tmp_path / "g.yaml", {"base": BASE, "grid": {"batch_size": [11, 12]}})
    out = tmp_path / "out"
    assert main(["sweep", str(grid), "--out", str(out), "--no-progress"]) == 1
    assert "2 of 2 cells failed" in capsys.readouterr().err
    errors = [r["error"] for r in read_records(str(out))]
    assert len(errors) == 2 and all("needs 1" in e and "has 10" in e for e in errors), errors


def test_an_unreachable_ray_cluster_is_one_line_before_any_work(tmp_path, capsys):
    pytest.importorskip("ray.tune")
    grid = _write_grid(tmp_path / "g.yaml")
    out = tmp_path / "out"
    args = ["sweep", str(grid), "--out", str(out), "--engine", "ray", "--address", "127.0.0.1:1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: cannot reach the Ray cluster at '127.0.0.1:1'") and "\n" not in err
    )
    assert not out.exists()
