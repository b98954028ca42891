"""`gradinv audit`: the battery, its page (rendered by a real headless Chromium), its data and its
one-line errors. Small budgets (`--budget test`, 16 px) keep the whole file to a couple of minutes."""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from gradinv.cli import main

ARGS = ["--budget", "test", "--image-size", "16", "--no-progress"]


def _img_sources(html: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    """A tiny generator (one epoch on 64 images of sample@train at 16 px), trained once."""
    from gradinv.generative import cached_generator

    root = tmp_path_factory.mktemp("generators")
    return cached_generator("sample@train", 3, 16, epochs=1, cache_dir=str(root), max_images=64)


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory, generator_dir):
    """One quick audit of LeNet on `sample` (16 px) with a generator and two defenses."""
    import contextlib

    out = tmp_path_factory.mktemp("audit") / "run"
    stdout = io.StringIO()
    args = ["audit", "--budget", "test", "--image-size", "16", "--generator", generator_dir,
            "--try-defense", "prune:ratio=0.9", "--try-defense", "noise:std=0.01",
            "--out", str(out)]  # fmt: skip
    with contextlib.redirect_stdout(stdout):
        code = main(args)
    return code, out, stdout.getvalue()


def test_audit_writes_page_json_and_images(audit_run):
    code, out, printed = audit_run
    assert code == 0, printed
    report = json.loads((out / "report.json").read_text())
    steps = {s["id"]: s for s in report["steps"]}
    # one progress line per step, then the summary and the page's path
    lines = [ln for ln in printed.splitlines() if re.match(r"\[\s*\d+/\d+\]", ln)]
    assert len(lines) == len(report["steps"]) == 21  # 13 + 4 per defense tried
    assert "report: " in printed and "report.html" in printed
    # closed forms: LeNet starts with a convolution, so bias and spear refuse with the reason
    for name in ("bias", "spear"):
        assert steps[name]["status"] == "refused" and "Conv2d" in steps[name]["reason"]
    assert steps["rgap"]["status"] == "ok" and steps["rgap"]["metrics"]["psnr"] > 60
    for name in ("auto", "ig", "dlg", "gias", "ggl", "dip"):
        assert steps[name]["status"] == "ok", (name, steps[name]["reason"])
        m = steps[name]["metrics"]
        assert 0 < m["psnr"] and -1 <= m["ssim"] <= 1 and m["time_s"] >= 0
        assert set(m["assumptions"]) == {"labels", "batch_size", "buffers"}
    assert steps["auto"]["metrics"]["info"]["chosen"] in ("rgap", "dlg", "ig")
    assert steps["learned"]["status"] == "skipped"
    labels = steps["labels"]["metrics"]
    assert labels["count_accuracy"] == 1.0 and labels["told"] is False
    bs = steps["batch-size"]["metrics"]
    assert bs["true"] == 1 and bs["estimate"] is None and bs["at_least"] == 1  # LeNet: a bound
    for spec in ("prune:ratio=0.9", "noise:std=0.01"):
        for part in ("round", "labels", "auto", "auto-aware"):
            assert steps[f"{spec}/{part}"]["status"] == "ok", (spec, part)
        assert steps[f"{spec}/auto-aware"]["options"]["defense_aware"] is True
    # the verdict: what leaked, how well, under which assumptions, with which defense
    v = report["verdict"]
    assert v["images"]["strongest_attack"] == "rgap" and v["images"]["level"] == "leaked"
    assert v["images"]["default_psnr"] == steps["auto"]["metrics"]["psnr"]
    assert [d["defense"] for d in v["defenses"]] == ["prune:ratio=0.9", "noise:std=0.01"]
    assert v["summary"] and v["summary"][0].startswith("Images: the private images leak")
    assert (
        report["threat_model"]["sees"]
        and "the private images" in (report["threat_model"]["does_not_see"])
    )
    assert {r["what"] for r in report["rows"]} == {"labels", "batch size", "images"}
    env = report["environment"]
    assert env["gradinv"] and env["torch"] and env["threads"] >= 1
    assert report["settings"]["budget"] == "test" and report["seconds"] > 0
    # the private batch and every reconstruction, matched to it
    from safetensors.torch import load_file

    tensors = load_file(str(out / "images.safetensors"))
    assert tensors["truth"].shape == (1, 3, 16, 16)
    assert {"rgap", "auto", "ig", "dlg", "gias", "ggl", "dip"} <= set(tensors)


def test_page_is_self_contained(audit_run):
    _, out, _ = audit_run
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", html)
    assert "url(" not in html  # no CSS resources either
    sources = _img_sources(html)
    assert len(sources) >= 2 * 7 + 1  # truth and reconstruction per attack, plus the batch
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:40]
        picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        picture.verify()
    for text in ("Threat model", "The server sees", "The server does not see", "Verdict",
                 "prune:ratio=0.9", "does not apply", "How to read this page"):  # fmt: skip
        assert text in html, text


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Chromium is needed for the browser test of the audit page and was not found on PATH: "
        "install it (Debian: apt-get install -y chromium; .ci/run does)"
    )


def _headless(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_chromium_renders_the_page(audit_run, tmp_path):
    _, out, _ = audit_run
    url = (out / "report.html").resolve().as_uri()
    shot = tmp_path / "audit-report.png"
    proc = _headless(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", url)
    assert shot.is_file(), f"no screenshot: {proc.stderr[-2000:]}"
    if os.environ.get("GRADINV_ARTIFACTS"):
        os.makedirs(os.environ["GRADINV_ARTIFACTS"], exist_ok=True)
        shutil.copy(shot, os.path.join(os.environ["GRADINV_ARTIFACTS"], shot.name))
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape[:2] == (4000, 1280)
    colours = np.unique(picture.reshape(-1, 3), axis=0)
    assert len(colours) > 1000, f"screenshot looks blank: {len(colours)} colours"
    top = picture[:120].reshape(-1, 3).mean(0)
    assert top[2] > top[0] + 15  # the dark blue header was painted (CSS applied)
    content_rows = np.flatnonzero((picture != picture[-1, -1]).any(axis=(1, 2)))
    assert content_rows.max() > 2000  # a long page, not an error page
    # the DOM Chromium built: every image is there with its data URI
    dom = _headless(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = (out / "report.html").read_text(encoding="utf-8")
    rendered = _img_sources(dom.stdout)
    assert len(rendered) == len(_img_sources(html))
    assert all(src.startswith("data:image/png;base64,") for src in rendered)
    assert "What a curious server rebuilds" in dom.stdout


@pytest.mark.parametrize("args, message", [
    (["--budget", "huge"], "'huge' is not one of"),
    (["--labels", "maybe"], "--labels 'maybe'; choose from: hidden, known"),
    (["--try-defense", "nope"], "unknown defense 'nope'; choose from: "),
    (["--try-defense", "prune:ratio=2"], "ratio"),
    (["--try-defense", "none", "--try-defense", "sign"], "cannot be combined"),
    (["--try-defense", "sign", "--try-defense", "sign"], "listed twice"),
    (["--defense", "noise:std=-1"], "std"),
    (["--generator", "/does/not/exist"], "not a generator directory"),
    (["--inverter", "/does/not/exist"], "inverter directory not found"),
    (["--model", "vgg"], "unknown model 'vgg'; choose from: "),
    (["--data", "mnist"], "unknown dataset 'mnist'"),
    (["--batch-size", "0"], "batch size must be an integer >= 1"),
    (["--protocol", "fedprox"], "unknown protocol"),
    (["--threads", "0"], "threads must be >= 1"),
])  # fmt: skip
def test_bad_input_is_one_line_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert main(["audit", *ARGS, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()


def test_out_is_checked_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["audit", *ARGS, "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    done = tmp_path / "done"
    done.mkdir()
    (done / "report.json").write_text("{}")
    assert main(["audit", *ARGS, "--out", str(done)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--overwrite" in err


def test_ctrl_c_writes_the_page_with_what_was_done(tmp_path, ctrl_c_at, capsys):
    ctrl_c_at(0)  # the battery's first optimisation step (`ig`: `auto` stops at exact rgap)
    out = tmp_path / "stopped"
    assert main(["audit", *ARGS, "--try-defense", "none", "--out", str(out)]) == 130
    assert "interrupted: stopped at step 8 of 13 (ig)" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    status = {s["id"]: s["status"] for s in report["steps"]}
    assert report["interrupted"] is True
    assert status["rgap"] == status["auto"] == "ok" and status["ig"] == "interrupted"
    assert status["dlg"] == status["gias"] == "not run"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Interrupted (Ctrl-C)" in html and html.rstrip().endswith("</html>")


def test_run_audit_from_python_without_defenses(tmp_path):
    from gradinv.audit import run_audit
    from gradinv.pipeline import RunConfig

    config = RunConfig(model="mlp4", model_options={"width": 64}, batch_size=2, labels="known",
                       share_batch_size=False, image_size=16)  # fmt: skip
    lines: list[str] = []
    report = run_audit(config, str(tmp_path / "a"), budget="test", defenses=[], log=lines.append)
    steps = {s["id"]: s for s in report["steps"]}
    assert len(lines) == 1 + len(report["steps"]) == 14  # a header line, then one per step
    # mlp4 starts with a linear layer: the closed forms apply; the batch size is revealed
    assert steps["bias"]["status"] == "ok" and steps["spear"]["status"] == "ok"
    assert steps["rgap"]["status"] == "refused"
    assert steps["batch-size"]["metrics"]["estimate"] == 2
    assert report["verdict"]["batch_size"]["level"] == "leaked"
    assert steps["labels"]["metrics"]["told"] is True
    assert steps["auto"]["metrics"]["assumptions"] == {
        "labels": "told", "batch_size": "estimated from the update", "buffers": "none in this model"
    }  # fmt: skip
    assert not any(s["id"].count("/") for s in report["steps"])
    assert (tmp_path / "a" / "report.html").is_file()


def test_attack_report_for_any_module(tmp_path):
    from gradinv import observe
    from gradinv.report import attack_report

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 32),
                                torch.nn.ReLU(), torch.nn.Linear(32, 4))  # fmt: skip
    images, labels = torch.rand(1, 3, 8, 8), torch.tensor([2])
    obs = observe(model, images, labels)
    m = attack_report(str(tmp_path / "r"), obs, "ig", images, labels, iterations=5)
    assert m["attack"] == "ig" and m["label_accuracy"] == 1.0 and m["iterations"] == 5
    for name in ("metrics.json", "config.yaml", "reconstruction.png", "curve.png"):
        assert (tmp_path / "r" / name).is_file(), name
    m = attack_report(str(tmp_path / "u"), obs, "bias")  # no private batch: unscored
    assert m["scored"] is False and (tmp_path / "u" / "reconstruction.png").is_file()


def test_generator_auto_is_trained_once_for_the_data(tmp_path, monkeypatch):
    from gradinv.audit import battery, run_audit
    from gradinv.pipeline import RunConfig

    monkeypatch.setenv("GRADINV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(battery, "GENERATOR_STEPS", 1)  # the minimum: 5 epochs of sample@train
    config = RunConfig(image_size=16, labels="auto")
    report = run_audit(config, str(tmp_path / "g"), budget="test", generator="auto", defenses=[])
    steps = {s["id"]: s for s in report["steps"]}
    gen = steps["generator"]["metrics"]
    assert gen["data"] == "sample@train" and gen["epochs"] == 5 and gen["image_size"] == 16
    assert gen["directory"].startswith(str(tmp_path / "cache"))
    assert all(steps[n]["status"] == "ok" for n in ("gias", "ggl", "dip"))
    assert steps["gias"]["options"]["generator"] == gen["directory"]
    assert any("sample@test" in note for note in report["notes"])  # the batch may be in @train


def test_ctrl_c_before_the_round_still_writes_a_page(tmp_path, monkeypatch):
    from gradinv.audit import battery, run_audit
    from gradinv.errors import Interrupted
    from gradinv.pipeline import RunConfig

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(battery, "prepare", stop)
    with pytest.raises(
        Interrupted, match=r"stopped at step 1 of 13 \(round\); the page with the 0 steps"
    ):
        run_audit(RunConfig(image_size=16), str(tmp_path / "c"), budget="test", defenses=[])
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert report["steps"][0]["status"] == "interrupted"
    assert {s["status"] for s in report["steps"][1:]} == {"not run"}
    assert "Interrupted (Ctrl-C)" in (tmp_path / "c" / "report.html").read_text()


def test_hidden_batch_size_that_is_only_bounded_is_explained(tmp_path):
    """LeNet's update only bounds a hidden B: the attacks that need it refuse, the page says so."""
    from gradinv.audit import run_audit
    from gradinv.pipeline import RunConfig

    config = RunConfig(image_size=16, batch_size=2, share_batch_size=False)
    report = run_audit(config, str(tmp_path / "h"), budget="test", defenses=[])
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["batch-size"]["metrics"]["at_least"] == 2
    for name in ("labels", "rgap", "ig", "dlg"):
        assert (
            steps[name]["status"] == "refused" and "batch size is hidden" in steps[name]["reason"]
        )
    assert steps["auto"]["status"] == "refused"
    assert report["verdict"]["images"]["strongest_attack"] is None
    assert any("only bounds it (at least 2)" in note for note in report["notes"])
    html = (tmp_path / "h" / "report.html").read_text(encoding="utf-8")
    assert "no attack applied" in html and "full text in report.json" in html


def test_learned_row_runs_with_an_inverter_and_adopts_its_normalisation(tmp_path):
    from gradinv.audit import run_audit
    from gradinv.learned import train_inverter
    from gradinv.pipeline import RunConfig

    # a tiny inverter on digits@train at 16x16 (seconds); the audit's batch comes from @test,
    # whose pixel statistics differ: without adopting the inverter's normalisation it refuses
    inverter = train_inverter(model="lenet", data="digits@train", channels=1, image_size=16,
                              epochs=1, seed=3, max_images=128, val_images=32, hidden=(16,),
                              sketch=128, batch=32, stats_updates=64, out=str(tmp_path / "inv"),
                              progress=False)  # fmt: skip
    config = RunConfig(model="lenet", data="digits@test", channels=1, image_size=16)
    report = run_audit(config, str(tmp_path / "l"), budget="test", inverter=inverter, defenses=[])
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["learned"]["status"] == "ok", steps["learned"].get("reason")
    assert 0 <= steps["learned"]["metrics"]["psnr"] < 60
