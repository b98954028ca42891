"""One cell of the defense experiment, as a module-level, picklable function: `cell(config,
out_dir) -> dict` (the sweep runner's cell contract). An attack cell simulates the defended round,
attacks it, and returns what the server can compute (matching losses) apart from what only the
evaluation may use (PSNR against the private batch); a utility cell trains FedAvg with the defense."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import torch

from ...attacks.engine import UpdateSimulator, matching_loss
from ...attacks.engine.problem import defense_model
from ...data import load_dataset, with_split
from ...defenses.utility import fedavg_accuracy, update_cosine
from ...errors import GradinvError
from ...fl import Observation
from ...metrics import psnr
from ...pipeline import RunConfig, prepare, run
from ...report.figures import grid_image
from .grid import NONE


def cell(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Run one cell (an "attack" or a "utility" config from `grid.cells`) with one torch thread;
    files go into `out_dir`, the returned dict is JSON-able. A sweep grid's `{"cell": config}`
    (one axis holding the cells) is unwrapped."""
    config = config.get("cell", config)
    if torch.get_num_threads() != 1:
        # tiny models: one thread is as fast and immune to oversubscription on a shared machine
        torch.set_num_threads(1)
    start, cpu = time.perf_counter(), time.process_time()
    if config["kind"] == "utility":
        out = _utility(config)
    elif config["kind"] == "attack":
        out = _attack(config, out_dir)
    else:
        raise GradinvError(f"unknown cell kind {config['kind']!r}; expected attack or utility")
    return {**out, "wall_s": round(time.perf_counter() - start, 2),
            "cpu_s": round(time.process_time() - cpu, 2)}  # fmt: skip


def run_config(config: dict[str, Any]) -> RunConfig:
    """The attack run a cell stands for (labels shared: the defenses are judged against the
    strongest server, which knows the labels; the model's seed varies with the batch's)."""
    options = dict(config["attack_options"])
    if config["aware"]:
        options["defense_aware"] = True
    if config.get("generator"):
        from ...generative import cached_generator

        options["generator"] = cached_generator(**config["generator"])
    defenses = [] if config["defense"] == NONE else [config["defense"]]
    iterations = options.pop("iterations", None)
    restarts = options.pop("restarts", None)
    return RunConfig(
        attack=config["attack"], model=config["model"], model_options=config["model_options"],
        data=config["data"], channels=config["channels"], image_size=config["image_size"],
        batch_size=config["batch_size"], labels="known", seed=config["seed"],
        model_seed=config["seed"], iterations=iterations, restarts=restarts,
        attack_options=options, defenses=defenses, threads=1,
    )  # fmt: skip


def _attack(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    rc = run_config(config)
    result = run(rc, progress=False)
    if result.reconstruction.info.get("interrupted"):
        raise KeyboardInterrupt  # the attack caught Ctrl-C: its best iterate is not this result
    obs, rec, truth = result.observation, result.reconstruction, result.images
    m = result.metrics
    labels = obs.labels
    plain = matching_loss(obs, rec.images, labels)
    # The server's yardstick for choosing among attacks: it knows the recorded defenses, so it
    # scores every candidate against what the defense lets through (equal to `plain` when the
    # defenses have nothing to simulate).
    aware = plain
    if obs.defenses:
        layers, transform, masks = defense_model(obs)
        simulator = UpdateSimulator(obs, layers=layers, transform=transform, masks=masks)
        aware = matching_loss(obs, rec.images, labels, simulator=simulator)
    order = m["assignment"]
    grid_image(truth, scale=2).save(os.path.join(out_dir, "truth.png"))
    grid_image(rec.images[order], scale=2).save(os.path.join(out_dir, "reconstruction.png"))
    return {
        "psnr": m["psnr"], "psnr_per_image": m["psnr_per_image"], "ssim": m["ssim"],
        "matching_plain": _finite(plain), "matching_aware": _finite(aware),
        "baseline_psnr": float(psnr(_mean_image(config, truth), truth).mean()),
        "update_cosine": _update_cosine(rc, obs),
        "epsilon": m.get("epsilon"), "delta": m.get("delta"),
        "attack_time_s": m["time_s"], "iterations": m["iterations"],
    }  # fmt: skip


def _finite(v: float) -> float | None:
    return v if v == v and abs(v) != float("inf") else None


@functools.cache
def _train_mean(spec: str, channels: int, image_size: int) -> torch.Tensor:
    """The mean image of the attacker's prior data (the @train split): the best data-independent
    guess in squared error, so the PSNR of an attack that learned nothing."""
    data = load_dataset(spec, channels)
    total = torch.zeros(data.channels, image_size, image_size, dtype=torch.float64)
    for start in range(0, len(data), 5000):
        idx = list(range(start, min(start + 5000, len(data))))
        total += data.load(idx, image_size).double().sum(0)
    return (total / len(data)).float()


def _mean_image(config: dict[str, Any], truth: torch.Tensor) -> torch.Tensor:
    mean = _train_mean(with_split(config["data"], "train"), config["channels"],
                       config["image_size"])  # fmt: skip
    return mean.expand_as(truth).clone()


def _update_cosine(rc: RunConfig, obs: Observation) -> float | None:
    """Cosine between the defended update the server saw and the same round's clean update.
    None for PRECODE: it changes the model (other parameters), not the update of the same one."""
    if not rc.defenses or rc.defenses[0].startswith("precode"):
        return None if rc.defenses else 1.0
    clean, _, _ = prepare(RunConfig(**{**rc.to_dict(), "defenses": []}), progress=False)
    return update_cosine(clean.update, obs.update)


def _utility(config: dict[str, Any]) -> dict[str, Any]:
    defenses = None if config["defense"] == NONE else [config["defense"]]
    acc = fedavg_accuracy(
        config["model"], config["data"], defenses, rounds=config["rounds"],
        clients=config["clients"], samples_per_client=config["samples_per_client"],
        test_size=config["test_size"], image_size=config["image_size"],
        model_options=config["model_options"], server_lr=config["server_lr"],
        seed=config["seed"],
    )  # fmt: skip
    return {"accuracy": acc}
