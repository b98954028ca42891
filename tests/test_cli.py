import json
import subprocess
import sys

import pytest
import yaml

from gradinv.cli import main


def test_attack_writes_the_full_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["attack", "--attack", "dlg", "--model", "mlp4", "--data", "sample", "--batch-size", "1",
                 "--labels", "known", "--iterations", "20", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("attack", "model", "batch_size", "seed", "psnr", "psnr_per_image", "ssim", "ssim_per_image",
                "mse", "label_accuracy", "iterations", "time_s"):  # fmt: skip
        assert key in metrics, key
    assert (
        metrics["psnr"] >= 30 and metrics["label_accuracy"] is None and metrics["iterations"] == 20
    )
    for name in ("reconstruction.png", "progress.gif", "curve.png"):
        assert (out / name).stat().st_size > 1000, name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["attack"] == "dlg" and config["iterations"] == 20
    assert "PSNR" in capsys.readouterr().out


def test_aggregated_clients_are_attacked_as_one_batch(tmp_path):
    out = tmp_path / "agg"
    args = ["attack", "--attack", "ig", "--model", "mlp4", "--model-opt", "width=200", "--clients", "2",
            "--iterations", "100", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clients"] == 2 and len(metrics["psnr_per_image"]) == 2
    assert metrics["psnr"] >= 25, metrics["psnr"]


def test_config_yaml_reruns_identically(tmp_path):
    from gradinv.pipeline import RunConfig, run

    out = tmp_path / "a"
    assert (
        main(
            ["attack", "--model", "lenet", "--iterations", "15", "--out", str(out), "--no-progress"]
        )
        == 0
    )
    config = RunConfig(**yaml.safe_load((out / "config.yaml").read_text()))
    again = run(config, progress=False)
    assert (
        again.metrics["psnr_per_image"]
        == json.loads((out / "metrics.json").read_text())["psnr_per_image"]
    )


def test_interrupted_attack_still_writes_the_report(tmp_path, ctrl_c_at):
    ctrl_c_at(4)
    out = tmp_path / "r"
    args = ["attack", "--attack", "ig", "--iterations", "500", "--out", str(out), "--no-progress"]
    assert main(args) == 130  # Ctrl-C: the report is written, the exit status says so
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["info"]["interrupted"] is True and metrics["iterations"] == 5


@pytest.mark.parametrize("args, message", [
    (["attack", "--attack", "nope"], "unknown attack 'nope'; choose from: "),
    (["attack", "--model", "vgg"], "unknown model 'vgg'; choose from: "),
    (["attack", "--data", "mnist"], "unknown dataset 'mnist'; choose from: "),
    (["attack", "--data", "cifar10:/does/not/exist"], "directory not found"),
    (["attack", "--batch-size", "0"], "batch size must be an integer >= 1"),
    (["attack", "--batch-size", "12"], "needs 12 classes"),
    (["attack", "--composition", "mixed"], "unknown composition"),
    (["attack", "--labels", "guess"], "unknown labels mode 'guess'; choose from: known, joint"),
    (["attack", "--dtype", "float16"], "unknown dtype"),
    (["attack", "--device", "tpu"], "unknown device"),
    (["attack", "--protocol", "fedprox"], "unknown protocol"),
    (["attack", "--iterations", "0"], "iterations must be >= 1"),
    (["attack", "--iterations", "ten"], "is not a valid integer"),
    (["attack", "--model-opt", "depth=3"], "has no option 'depth'"),
    (["attack", "--attack", "ig", "--attack-opt", "lr=-1"], "lr must be > 0"),
    (["attack", "--attack", "ig", "--attack-opt", "momentum=0.9"], "has no option 'momentum'"),
    (["attack", "--attack", "ig", "--attack-opt", "lr=abc"], "option lr='abc' must be of type float"),
    (["attack", "--attack", "ig", "--attack-opt", "restarts=1.5"], "must be of type int"),
    (["attack", "--attack", "ig", "--attack-opt", "lr=1e309"], "must be a finite number"),
    (["attack", "--attack", "ig", "--attack-opt", "num_snapshots=-1"], "num_snapshots must be >= 1"),
    (["attack", "--attack", "ig", "--attack-opt", "signed=maybe"], "expected true or false"),
    (["attack", "--seed", "-1"], "seed must be an integer >= 0"),
    (["attack", "--model", "mlp4", "--model-opt", "width=-5"], "width must be an integer >= 1"),
    (["attack", "--model", "convnet", "--image-size", "4"], "fails on this batch of 1 in train mode"),
    (["attack", "--truth", "x.safetensors"], "give --observation"),
    (["attack", "--observation", "/no/such/dir"], "observation directory not found"),
    (["attack", "--model", "/no/such/file.py:Net"], "file not found"),
    (["attack", "--attack-opt", "progress=False"], "not an attack option"),
    (["attack", "--prior", "tv"], "expected NAME=WEIGHT"),
    (["attack", "--prior", "sparsity=1"], "unknown prior"),
    (["attack", "--clients", "0"], "clients must be an integer >= 1"),
    (["attack", "--image-size", "2"], "image size must be at least 4"),
    (["attack", "--local-epochs", "0", "--protocol", "fedavg"], "local epochs must be an integer >= 1"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_unwritable_report_directory_fails_before_the_attack(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["attack", "--out", str(blocker), "--iterations", "100000", "--no-progress"]) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_an_earlier_report_is_not_overwritten_and_failures_leave_no_directory(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["attack", "--attack", "dlg", "--model", "mlp4", "--model-opt", "width=50",
            "--iterations", "1", "--image-size", "8", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    failed = tmp_path / "failed"
    assert main([*args[:-3], "--out", str(failed), "--labels", "yin", "--batch-size", "12"]) == 2
    assert not failed.exists()


def test_saved_observation_round_trip_through_the_cli(tmp_path, capsys):
    obs_dir = tmp_path / "obs"
    base = ["--model", "mlp4", "--model-opt", "width=50", "--image-size", "8", "--no-progress"]
    assert main(["observe", *base, "--out", str(obs_dir)]) == 0
    truth = str(obs_dir) + ".truth.safetensors"
    assert (obs_dir / "observation.json").exists() and not (obs_dir / "truth.safetensors").exists()
    assert main(["inspect", str(obs_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["revealed"]["labels"] is None and info["revealed"]["batch_size"] == 1
    out = tmp_path / "attack"
    attack = ["attack", "--attack", "bias", "--observation", str(obs_dir), "--no-progress"]
    assert main([*attack, "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["scored"] is False
    assert main([*attack, "--truth", truth, "--out", str(tmp_path / "scored")]) == 0
    assert json.loads((tmp_path / "scored" / "metrics.json").read_text())["psnr"] > 60


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("dlg", "ig", "mlp4", "lenet", "resnet18", "cnn6", "convnet", "sample", "cifar10:DIR",
                 "unique", "repeat:K", "idlg", "tv"):  # fmt: skip
        assert word in out, word


def test_real_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gradinv", "attack", "--attack", "nope"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        == "error: unknown attack 'nope'; choose from: " + proc.stderr.split("from: ")[1].strip()
    )


def test_ctrl_c_while_importing_exits_130_without_a_traceback(monkeypatch, capsys):
    import builtins

    from gradinv import _entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "cli" or name.endswith(".cli"):
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        _entry.entry()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted"
