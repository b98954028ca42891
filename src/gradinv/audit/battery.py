"""The audit battery: every measurement on one simulated deployment, in a fixed order, each step
recorded whether it ran, refused (does not apply, with the reason) or was skipped.

Choices are blind: the steps, their budgets and the default attack's pick never look at the
private images. The private batch is used only to score (PSNR/SSIM, count accuracy), which is what
the audit reports."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch

from ..errors import GradinvError, Interrupted
from ..pipeline import RunConfig, check, jsonable, prepare, score, use_threads

# Iterations per budget: `standard` is every attack's own default; `quick` keeps the default
# audit (LeNet, `sample`, batch 1) at a couple of minutes on 2 CPU cores; `test` is a smoke test.
BUDGETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "auto": {"budget": 0.1},
        "ig": {"iterations": 500},
        "dlg": {"iterations": 25},
        "gias": {"iterations": 125, "weight_iterations": 125},
        "ggl": {"generations": 50},
        "dip": {"iterations": 250},
    },
    "standard": {},
    "test": {
        "auto": {"iterations": 2},
        "ig": {"iterations": 4},
        "dlg": {"iterations": 2},
        "gias": {"iterations": 3, "weight_iterations": 2, "restarts": 1},
        "ggl": {"generations": 2, "population": 4},
        "dip": {"iterations": 3},
    },
}
DEFAULT_DEFENSES = ("prune:ratio=0.9", "noise:std=0.01", "dpsgd:noise=1,clip=1")
CLOSED_FORMS = ("bias", "spear", "rgap")
NAMED = ("ig", "dlg")
GENERATIVE = ("gias", "ggl", "dip")
TITLES = {
    "bias": "bias: closed form through a first linear layer",
    "spear": "spear: exact batch inversion of a linear+ReLU layer",
    "rgap": "rgap: recursive closed form (R-GAP)",
    "auto": "auto: the default attack",
    "ig": "ig: Inverting Gradients",
    "dlg": "dlg: Deep Leakage from Gradients",
    "gias": "gias: generator latent, then weights",
    "ggl": "ggl: CMA-ES on a generator's latent",
    "dip": "dip: deep image prior",
    "learned": "learned: a trained inverter network",
}
LABELS = {"round": "client round", "batch-size": "batch size"}  # progress-line names of steps
GENERATOR_STEPS = 1000  # --generator auto: about this many training steps (at least 5 epochs)


@dataclass
class Step:
    """One planned measurement. `defense`: a defense added on top of the deployment's own."""

    id: str
    kind: (
        str  # round | labels | batch_size | closed_form | attack | generator | generative | learned
    )
    title: str
    attack: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    defense: str | None = None
    skip: str | None = None  # why the step does not run (known before any work)


@dataclass
class AuditPlan:
    """Everything the audit will do, decided and checked before any work."""

    config: RunConfig
    budget: str
    steps: list[Step]
    generator: str | None
    inverter: str | None
    defenses: list[str]
    notes: list[str] = field(default_factory=list)


def _has_opacus() -> bool:
    return importlib.util.find_spec("opacus") is not None


def _defense_name(spec: str) -> str:
    return spec.partition(":")[0].strip()


def _options(budget: str, attack: str, **extra: Any) -> dict[str, Any]:
    return {**BUDGETS[budget].get(attack, {}), **extra}


def plan_audit(
    config: RunConfig,
    budget: str = "quick",
    generator: str | None = None,
    inverter: str | None = None,
    defenses: list[str] | tuple[str, ...] | None = None,
) -> AuditPlan:
    """The audit's steps for this deployment; every bad input is one GradinvError, raised here,
    before any work. `defenses` are added one at a time on top of the deployment's own
    (`config.defenses`); None: `DEFAULT_DEFENSES` (dpsgd only when Opacus is installed)."""
    from ..attacks import ATTACKS
    from ..defenses import parse_defense
    from ..models import MODELS
    from ..models.user import is_user_model

    config = dataclasses.replace(config, attack="auto", iterations=None, restarts=None,
                                 attack_options={}, priors=[])  # fmt: skip
    if config.observation or config.truth:
        raise GradinvError(
            "the audit simulates the deployment's round itself: it takes no saved observation "
            "(attack one with `gradinv attack --observation DIR`)"
        )
    check(config)
    if not is_user_model(config.model):
        MODELS.get(config.model)
    if budget not in BUDGETS:
        raise GradinvError(f"unknown budget {budget!r}; choose from: {', '.join(BUDGETS)}")
    notes: list[str] = []
    if defenses is None:
        defenses = [d for d in DEFAULT_DEFENSES if _defense_name(d) != "dpsgd" or _has_opacus()]
        if not _has_opacus():
            notes.append(
                "DP-SGD was not tried: Opacus is not installed (pip install 'gradinv[opacus]')"
            )
    defenses = list(defenses)
    for spec in [*config.defenses, *defenses]:
        parse_defense(spec)
        if _defense_name(spec) == "dpsgd" and not _has_opacus():
            raise GradinvError("defense dpsgd needs Opacus: pip install 'gradinv[opacus]'")
    if len(set(defenses)) != len(defenses):
        raise GradinvError(f"a defense is listed twice: {', '.join(defenses)}")
    if generator is not None and generator != "auto":
        if not os.path.isfile(os.path.join(generator, "generator.json")):
            raise GradinvError(
                f"not a generator directory: {generator} (generator.json missing); train one with "
                "`gradinv train-generator` or pass --generator auto"
            )
    if inverter is not None and not os.path.isdir(inverter):
        raise GradinvError(f"inverter directory not found: {inverter}")

    steps = [
        Step("round", "round", "client round (what the server receives)"),
        Step("labels", "labels", "label recovery (auto strategy)"),
        Step("batch-size", "batch_size", "batch size from the update's rank"),
    ]
    steps += [Step(n, "closed_form", TITLES[n], n) for n in CLOSED_FORMS]
    steps.append(Step("auto", "attack", TITLES["auto"], "auto", _options(budget, "auto")))
    steps += [Step(n, "attack", TITLES[n], n, _options(budget, n)) for n in NAMED]
    no_generator = (
        None if generator else "no generator: pass --generator DIR, or --generator auto to train "
        "one for this data (minutes)"
    )  # fmt: skip
    if generator == "auto":
        steps.append(Step("generator", "generator", "generator prior (trained once, cached)"))
    for n in GENERATIVE:
        steps.append(Step(n, "generative", TITLES[n], n, _options(budget, n), skip=no_generator))
    if "learned" not in ATTACKS:
        skip = "the learned attack is not part of this gradinv version"
    elif inverter is None:
        skip = "no inverter: pass --inverter DIR (gradinv train-inverter)"
    else:
        skip = None
    options = {} if inverter is None else {"inverter": inverter}
    steps.append(Step("learned", "learned", TITLES["learned"], "learned", options, skip=skip))
    for spec in defenses:
        steps += [
            Step(f"{spec}/round", "round", f"client round under {spec}", defense=spec),
            Step(f"{spec}/labels", "labels", f"label recovery under {spec}", defense=spec),
            Step(f"{spec}/auto", "attack", f"auto under {spec}", "auto",
                 _options(budget, "auto"), defense=spec),
            Step(f"{spec}/auto-aware", "attack", f"auto, defense-aware, under {spec}", "auto",
                 _options(budget, "auto", defense_aware=True), defense=spec),
        ]  # fmt: skip
    return AuditPlan(config, budget, steps, generator, inverter, defenses, notes)


class _Audit:
    """The state of one audit run: deployments simulated so far, records, images."""

    def __init__(self, plan: AuditPlan, log: Callable[[str], None] | None) -> None:
        self.plan = plan
        self.config = plan.config
        self.log = log or (lambda _line: None)
        self.rounds: dict[str | None, tuple[Any, torch.Tensor, torch.Tensor]] = {}
        self.failed_rounds: dict[str | None, str] = {}
        self.records: list[dict[str, Any]] = []
        self.images: dict[str, torch.Tensor] = {}
        self.generator_dir: str | None = None if plan.generator == "auto" else plan.generator
        self.generator_problem: str | None = None
        self.interrupted = False
        self.notes = list(plan.notes)

    # --- running ------------------------------------------------------------------------------
    def run(self) -> None:
        total = len(self.plan.steps)
        width = len(str(total))
        for i, step in enumerate(self.plan.steps, 1):
            if self.interrupted:
                self.records.append(self._record(step, "not run", "the audit was interrupted"))
                continue
            record = self._run_step(step)
            self.records.append(record)
            label = LABELS.get(step.id, step.id.replace("/", " · "))
            self.log(f"[{i:>{width}}/{total}] {label}: {line(record)}")

    def _record(self, step: Step, status: str, reason: str | None = None) -> dict[str, Any]:
        return {
            "id": step.id, "kind": step.kind, "title": step.title, "attack": step.attack,
            "options": dict(step.options), "defense": step.defense, "status": status,
            "reason": reason, "seconds": 0.0,
        }  # fmt: skip

    def _run_step(self, step: Step) -> dict[str, Any]:
        skip = step.skip or self._blocked(step)
        if skip:
            return self._record(step, "skipped", skip)
        record = self._record(step, "ok")
        start, cpu = time.perf_counter(), time.process_time()
        try:
            getattr(self, f"_do_{step.kind}")(step, record)
        except GradinvError as exc:
            if step.kind == "round" and step.defense is None:
                raise  # the deployment itself cannot be simulated: a bad input
            record["status"], record["reason"] = "refused", str(exc)
            if step.kind == "round":
                self.failed_rounds[step.defense] = str(exc)
            if step.kind == "generator":
                self.generator_problem = f"the generator could not be built: {exc}"
        except (KeyboardInterrupt, Interrupted):  # Interrupted: a generator's training saved
            record["status"], record["reason"] = "interrupted", "Ctrl-C during this step"
            self.interrupted = True
        except Exception as exc:  # noqa: BLE001 - a crash of one step must not lose the audit
            record["status"], record["reason"] = "error", f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc(limit=8)
            if step.kind == "round":
                self.failed_rounds[step.defense] = record["reason"]
        record["seconds"] = round(time.perf_counter() - start, 2)
        record["cpu_seconds"] = round(time.process_time() - cpu, 2)
        return record

    def _blocked(self, step: Step) -> str | None:
        """Why a step cannot run because an earlier one failed (None: it can)."""
        if step.kind != "round" and step.defense in self.failed_rounds:
            return f"the round under {step.defense} could not be simulated"
        if step.kind == "generative" and self.generator_dir is None:
            return self.generator_problem or "no generator"
        return None

    def _round(self, step: Step) -> tuple[Any, torch.Tensor, torch.Tensor]:
        return self.rounds[step.defense]

    def _config(self, step: Step) -> RunConfig:
        defenses = list(self.config.defenses) + ([step.defense] if step.defense else [])
        return dataclasses.replace(self.config, attack=step.attack or "auto", defenses=defenses,
                                   attack_options=dict(step.options))  # fmt: skip

    # --- the steps ----------------------------------------------------------------------------
    def _do_round(self, step: Step, record: dict[str, Any]) -> None:
        obs, images, labels = prepare(self._config(step), progress=False)
        self.rounds[step.defense] = (obs, images, labels)
        if step.defense is None:
            self.images["truth"] = images
        norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in obs.update.values()))
        record["metrics"] = {
            "batch_size": int(images.shape[0]),
            "labels_true": sorted(int(v) for v in labels),
            "parameters": int(sum(v.numel() for v in obs.parameters.values())),
            "update_norm": norm,
            "privacy": jsonable(obs.privacy),
        }

    def _do_labels(self, step: Step, record: dict[str, Any]) -> None:
        from ..labels import batch_size_of, recover_labels
        from ..metrics import label_accuracy

        obs, _, labels = self._round(step)
        if not obs.protocol.cross_entropy:
            raise GradinvError(
                f"label recovery assumes a cross-entropy loss; this client trains with "
                f"{obs.protocol.loss_name!r}"
            )
        hidden = obs.without(labels=True)
        b = batch_size_of(hidden)
        recovered = recover_labels(hidden, "auto", b)
        record["metrics"] = {
            "strategy": "auto",
            "told": obs.labels is not None,
            "batch_size_used": b,
            "batch_size_source": "told" if obs.batch_size is not None else "estimated",
            "labels_recovered": [int(v) for v in recovered],
            "labels_true": sorted(int(v) for v in labels),
            "count_accuracy": label_accuracy(recovered, labels),
        }

    def _do_batch_size(self, step: Step, record: dict[str, Any]) -> None:
        from ..labels import estimate_batch_size

        obs, images, _ = self._round(step)
        est = estimate_batch_size(obs)
        true = int(images.shape[0])
        record["metrics"] = {
            "told": obs.batch_size is not None,
            "true": true,
            **dataclasses.asdict(est),
            "correct": est.estimate == true,
        }

    def _do_closed_form(self, step: Step, record: dict[str, Any]) -> None:
        self._do_attack(step, record)

    def _do_generative(self, step: Step, record: dict[str, Any]) -> None:
        step = dataclasses.replace(step, options={**step.options, "generator": self.generator_dir})
        record["options"] = dict(step.options)
        self._do_attack(step, record)

    def _do_learned(self, step: Step, record: dict[str, Any]) -> None:
        self._do_attack(step, record)

    def _do_attack(self, step: Step, record: dict[str, Any]) -> None:
        from ..attacks import make_attack

        obs, images, labels = self._round(step)
        attack = make_attack(step.attack or "auto", progress=False, seed=self.config.seed,
                             **step.options)  # fmt: skip
        start = time.perf_counter()
        rec = attack.reconstruct(obs)
        elapsed = time.perf_counter() - start
        metrics = score(self._config(step), rec, images, labels, elapsed)
        metrics["loss_curve"] = curve(rec.loss_history)
        metrics["assumptions"] = assumptions(obs, rec)
        record["metrics"] = metrics
        self.images[step.id] = rec.images[torch.as_tensor(metrics["assignment"])].float().cpu()
        if rec.info.get("interrupted"):
            record["status"], record["reason"] = "interrupted", "Ctrl-C: best iterate so far"
            self.interrupted = True

    def _do_generator(self, step: Step, record: dict[str, Any]) -> None:
        from ..data import load_dataset, with_split
        from ..generative import cached_generator

        obs = self.rounds[None][0]
        spec = with_split(self.config.data, "train")
        channels, size = obs.input_shape[0], obs.input_shape[1]
        n = len(load_dataset(spec, channels))
        epochs = min(200, max(5, math.ceil(GENERATOR_STEPS / math.ceil(n / 64))))
        self.generator_dir = cached_generator(spec, channels, size, epochs, seed=0, threads=1)
        record["metrics"] = {"directory": self.generator_dir, "data": spec, "images": n,
                             "epochs": epochs, "channels": channels, "image_size": size}  # fmt: skip
        if not self.config.data.endswith("@test"):
            self.notes.append(
                f"the generator was trained on {spec}; the private batch comes from "
                f"{self.config.data}, which may hold the same images — audit with "
                f"--data {with_split(self.config.data, 'test')} for a fair generative score"
            )


def line(record: dict[str, Any]) -> str:
    """The one progress line of a finished step."""
    status, m = record["status"], record.get("metrics") or {}
    secs = f" ({record['seconds']:.1f} s)"
    if status in ("skipped", "refused", "error", "not run") or not m:
        word = {"refused": "does not apply", "error": "ERROR"}.get(status, status)
        return f"{word}: {record['reason']}"
    kind = record["kind"]
    if kind == "round":
        return f"batch of {m['batch_size']}, update norm {m['update_norm']:.3g}{secs}"
    if kind == "labels":
        return (
            f"count accuracy {m['count_accuracy']:.2f} (recovered {m['labels_recovered']}, "
            f"true {m['labels_true']}){secs}"
        )
    if kind == "batch_size":
        est = "not determined" if m["estimate"] is None else str(m["estimate"])
        return f"estimate {est}, at least {m['at_least']} (true {m['true']}){secs}"
    if kind == "generator":
        return f"{m['directory']} ({m['epochs']} epochs on {m['data']}){secs}"
    text = f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}"
    chosen = (m.get("info") or {}).get("chosen")
    if chosen:
        text += f" (chose {chosen})"
    if m.get("label_accuracy") is not None:
        text += f", label accuracy {m['label_accuracy']:.2f}"
    if status == "interrupted":
        text += " — interrupted"
    return text + secs


def curve(history: list[float], points: int = 200) -> list[list[float]]:
    """The matching-loss history thinned to at most `points` (iteration, loss) pairs."""
    if not history:
        return []
    n = len(history)
    idx = (
        range(n)
        if n <= points
        else sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})
    )
    return [[i, float(history[i])] for i in idx if math.isfinite(float(history[i]))]


def assumptions(obs: Any, rec: Any) -> dict[str, str]:
    """What the attack took as given: labels and batch size (told, recovered, estimated)."""
    source = rec.info.get("labels_source")
    if obs.labels is not None:
        labels = "told"
    elif source == "joint":
        labels = "optimised jointly"
    elif source:
        labels = f"recovered ({source})"
    elif rec.labels is not None:
        labels = "recovered"
    else:
        labels = "not used"
    held = [k for k, v in obs.model.named_buffers() if v.is_floating_point()]
    buffers = "none in this model" if not held else "told" if obs.buffers else "not told"
    return {
        "labels": labels,
        "batch_size": "told" if obs.batch_size is not None else "estimated from the update",
        "buffers": buffers,
    }


def finite(value: Any) -> Any:
    """JSON-safe: NaN and ±Inf become None (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def environment() -> dict[str, Any]:
    """Versions, machine and threads, stamped on the page."""
    from .. import __version__

    commit = None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    head = os.path.join(os.path.dirname(root), ".git")
    if os.path.exists(head):
        try:
            import subprocess

            out = subprocess.run(["git", "-C", os.path.dirname(root), "rev-parse", "--short",
                                  "HEAD"], capture_output=True, text=True, timeout=5)  # fmt: skip
            commit = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
    opacus = None
    if _has_opacus():
        from importlib.metadata import PackageNotFoundError, version

        try:
            opacus = version("opacus")
        except PackageNotFoundError:
            opacus = "?"
    return {
        "gradinv": __version__,
        "commit": commit,
        "torch": torch.__version__,
        "opacus": opacus,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def run_audit(
    config: RunConfig,
    out: str,
    *,
    budget: str = "quick",
    generator: str | None = None,
    inverter: str | None = None,
    defenses: list[str] | tuple[str, ...] | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the audit battery on the deployment `config` describes and write `out/report.html`
    (self-contained), `out/report.json` (the same content as data) and `out/images.safetensors`
    (the private batch and every reconstruction, matched to it). Returns the report dict.

    config: the client round, as for `gradinv attack` (model, data, batch size, composition,
    protocol, loss, defenses the deployment already uses, seeds, threads). `config.labels`:
    "known" when the deployment tells the server the labels, any label strategy (e.g. "auto")
    when it does not; `config.share_batch_size` says whether it tells the batch size.
    budget: "quick" (default; a couple of minutes for LeNet at batch 1), "standard" (every
    attack's default iterations) or "test" (a smoke test). generator: a generator directory for
    gias/ggl/dip, "auto" to train one for this data with `cached_generator` (minutes), None to
    skip them. inverter: a directory for the `learned` attack (skipped when the attack is not
    registered). defenses: specs tried one at a time on top of the deployment's (None:
    `DEFAULT_DEFENSES`). log: called with one line per finished step.

    Everything is checked before any work (GradinvError). After Ctrl-C the page is written with
    the steps done so far and `Interrupted` is raised."""
    from ..report import output_directory
    from .verdict import build_report

    config = _with_inverter_normalization(config, inverter)
    plan = plan_audit(config, budget, generator, inverter, defenses)
    with output_directory(out, overwrite, marker="report.json"):
        plan.config.threads = use_threads(plan.config.threads)
        audit = _Audit(plan, log)
        started = datetime.now(timezone.utc)
        t0, cpu0 = time.perf_counter(), time.process_time()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        if log:
            log(
                f"audit: {plan.config.model} on {plan.config.data}, batch {plan.config.batch_size}, "
                f"{plan.config.protocol}, labels {'told' if plan.config.labels == 'known' else 'hidden'}; "
                f"budget {budget}; {len(plan.steps)} steps -> {out}"
            )
        try:
            audit.run()
        except KeyboardInterrupt:  # between steps
            audit.interrupted = True
        report = build_report(
            plan, audit.records, audit.rounds, audit.notes, environment(),
            started=started.isoformat(timespec="seconds"),
            seconds=round(time.perf_counter() - t0, 1), interrupted=audit.interrupted,
            cpu_seconds=round(time.process_time() - cpu0, 1), load=load,
            command=command if command is not None else " ".join(sys.argv),
        )  # fmt: skip
        write_audit(out, report, audit.images)
    if audit.interrupted:
        at = next((i for i, r in enumerate(audit.records) if r["status"] in ("interrupted",
                   "not run")), len(audit.records) - 1)  # fmt: skip
        done = sum(r["status"] in ("ok", "refused") for r in audit.records)
        raise Interrupted(
            f"stopped at step {at + 1} of {len(plan.steps)} ({plan.steps[at].id}); the page "
            f"with the {done} steps finished is {os.path.join(out, 'report.html')}"
        )
    return report


def _with_inverter_normalization(config: RunConfig, inverter: str | None) -> RunConfig:
    """An inverter is trained for one input normalisation (part of the deployment's model, not of
    the private data): when the user gave none, the simulated round uses the inverter's, so that
    the learned row is not refused over the test split's slightly different pixel statistics."""
    from ..attacks import ATTACKS

    if inverter is None or config.norm_mean is not None or "learned" not in ATTACKS:
        return config
    from ..learned import read_record

    norm = read_record(inverter).get("normalization") or {}
    if not norm.get("mean") or not norm.get("std"):
        return config
    return dataclasses.replace(config, norm_mean=list(norm["mean"]), norm_std=list(norm["std"]))


def write_audit(out: str, report: dict[str, Any], images: dict[str, torch.Tensor]) -> None:
    """report.json first (nothing computed is lost if the page fails), then the images and the
    page."""
    from safetensors.torch import save_file

    from ..report.page import render_audit

    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump(finite(report), fh, indent=1, allow_nan=False, default=str)
    if images:
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in images.items()}
        save_file(tensors, os.path.join(out, "images.safetensors"))
    page = render_audit(report, images)
    with open(os.path.join(out, "report.html"), "w", encoding="utf-8") as fh:
        fh.write(page)
