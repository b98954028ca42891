"""From the battery's records to what an auditor reads: the threat model in words, the verdict
(what leaked, how well, under which assumptions, with what defense) and the report dict that
becomes report.json and report.html.

Levels are reporting only, computed after every choice was made: images ≥ 25 dB PSNR "leaked",
18–25 dB "partly", below "not recovered" (at this budget); labels: count accuracy 1 "leaked",
≥ 0.5 "partly"; batch size: the exact value "leaked", a lower bound "bound"."""

from __future__ import annotations

from typing import Any

from ..pipeline import jsonable

LEAKED_DB = 25.0  # the project's "recognisable" line (README: ≥ 25 dB)
PARTLY_DB = 18.0  # information-discard's target: below it, no recognisable content
IMAGE_KINDS = ("closed_form", "attack", "generative", "learned")


def image_level(psnr: float | None) -> str:
    if psnr is None:
        return "n/a"
    return "leaked" if psnr >= LEAKED_DB else "partly" if psnr >= PARTLY_DB else "not recovered"


def label_level(accuracy: float | None) -> str:
    if accuracy is None:
        return "n/a"
    return "leaked" if accuracy >= 1.0 else "partly" if accuracy >= 0.5 else "not recovered"


def deployment(config: Any, obs: Any | None) -> dict[str, Any]:
    """The deployment the audit simulated, in the terms of the threat model."""
    d = {
        "model": config.model,
        "model_options": dict(config.model_options),
        "data": config.data,
        "image_size": config.image_size,
        "channels": config.channels,
        "batch_size": config.batch_size,
        "clients": config.clients,
        "secure_aggregation": config.secure_aggregation,
        "composition": config.composition,
        "protocol": config.protocol,
        "local_epochs": config.local_epochs if config.protocol == "fedavg" else None,
        "local_lr": config.local_lr if config.protocol == "fedavg" else None,
        "local_batch_size": config.local_batch_size if config.protocol == "fedavg" else None,
        "loss": config.loss,
        "train_epochs": config.train_epochs,
        "defenses": list(config.defenses),
        "labels_told": config.labels == "known" and not config.secure_aggregation,
        "batch_size_told": bool(config.share_batch_size),
        "normalize": config.normalize,
        "seed": config.seed,
        "model_seed": config.model_seed,
        "dtype": config.dtype,
        "device": config.device,
    }
    if obs is not None:
        d["input_shape"] = list(obs.input_shape)
        d["num_classes"] = obs.num_classes
        d["parameters"] = int(sum(v.numel() for v in obs.parameters.values()))
        d["buffers_told"] = sorted(obs.buffers)
        d["batch_stats_told"] = bool(obs.batch_stats)
        d["client_mode"] = "train" if obs.train_mode else "eval"
    return d


def threat_model(dep: dict[str, Any]) -> dict[str, Any]:
    """The threat model in words: what the server sees and what it does not."""
    protocol = (
        "the gradient of the client's loss on its batch, from one step (FedSGD)"
        if dep["protocol"] == "fedsgd"
        else f"the change of the weights after {dep['local_epochs']} local epoch(s) of SGD at "
        f"learning rate {dep['local_lr']}"
        + (f", minibatches of {dep['local_batch_size']}" if dep["local_batch_size"] else "")
        + " (FedAvg)"
    )
    shape = dep.get("input_shape")
    sees = [
        f"the model's architecture ({dep['model']}) and the parameters it sent "
        f"({dep.get('parameters', '?'):,} trainable)"
        if isinstance(dep.get("parameters"), int)
        else f"the model's architecture ({dep['model']}) and the parameters it sent",
        f"the client's update: {protocol}",
        f"the training protocol and loss ({dep['loss']}), as it set them",
        "the data interface: "
        + (f"{shape[0]}×{shape[1]}×{shape[2]} inputs, " if shape else "")
        + (f"{dep['num_classes']} classes, " if "num_classes" in dep else "")
        + ("the normalisation (mean, std)" if dep["normalize"] else "no normalisation"),
    ]
    buffers = dep.get("buffers_told") or []
    sees.append(
        f"the model's buffers ({len(buffers)}: BatchNorm running statistics)"
        if buffers
        else "the model's buffers (this model has none)"
    )
    if dep["defenses"]:
        sees.append(
            "the defenses the client applies and their settings ("
            + ", ".join(dep["defenses"])
            + "), not their random draws"
        )
    if dep["clients"] > 1:
        sees.append(
            f"the sum of {dep['clients']} clients' updates only (secure aggregation)"
            if dep["secure_aggregation"]
            else f"the size-weighted aggregate of {dep['clients']} clients' updates"
        )
    if dep["batch_size_told"]:
        sees.append(f"the batch size ({dep['batch_size']} per client)")
    if dep["labels_told"]:
        sees.append("the labels of the batch (the deployment shares them)")
    not_seen = ["the private images"]
    if not dep["labels_told"]:
        not_seen.append("the labels (the audit recovers them from the update)")
    if not dep["batch_size_told"]:
        not_seen.append("the batch size (the audit estimates it from the update's rank)")
    if not dep.get("batch_stats_told"):
        not_seen.append("the batch's own statistics inside the model (BatchNorm batch means)")
    not_seen.append(
        "the random draws of stochastic defenses (noise values, DP-SGD's noise and clipping)"
    )
    if dep["clients"] > 1:
        not_seen.append("which client holds which image")
    summary = (
        "The server is honest but curious: it runs the protocol as agreed and then tries to "
        "rebuild the client's private images from what it received. It knows the model it sent "
        "and the training recipe, and receives one update."
    )
    return {"summary": summary, "sees": sees, "does_not_see": not_seen}


def _assumption_text(record: dict[str, Any], dep: dict[str, Any]) -> str:
    m = record.get("metrics") or {}
    a = m.get("assumptions")
    if a:
        text = f"labels {a['labels']}; batch size {a['batch_size']}"
        if a.get("buffers", "none in this model") != "none in this model":
            text += f"; BatchNorm statistics {a['buffers']}"
        return text
    if record["kind"] == "labels":
        source = m.get("batch_size_source")
        return "labels hidden from the attack" + (f"; batch size {source}" if source else "")
    if record["kind"] == "batch_size":
        return "batch size not used (estimated from the update)"
    return ""


def rows(records: list[dict[str, Any]], dep: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdict table: one row per measurement (labels, batch size, each attack)."""
    base = ", ".join(dep["defenses"]) or "none"
    out = []
    for r in records:
        kind, m = r["kind"], r.get("metrics") or {}
        if kind in ("round", "generator"):
            continue
        defense = base if r["defense"] is None else (
            r["defense"] if base == "none" else f"{base} + {r['defense']}"
        )  # fmt: skip
        row: dict[str, Any] = {
            "id": r["id"], "title": r["title"], "attack": r["attack"], "defense": defense,
            "status": r["status"], "reason": r["reason"], "seconds": r["seconds"],
            "assumptions": _assumption_text(r, dep),
        }  # fmt: skip
        if kind == "labels":
            row["what"] = "labels"
            acc = m.get("count_accuracy")
            row["count_accuracy"] = acc
            row["level"] = label_level(acc) if r["status"] == "ok" else r["status"]
            if acc is not None:
                row["result"] = (
                    f"{round(acc * len(m['labels_true']))}/{len(m['labels_true'])} counts right"
                )
        elif kind == "batch_size":
            row["what"] = "batch size"
            if r["status"] == "ok":
                row.update(estimate=m["estimate"], at_least=m["at_least"])
                if m["estimate"] is not None:
                    row["level"] = "leaked" if m["correct"] else "wrong"
                    row["result"] = f"estimate {m['estimate']} (true {m['true']})"
                else:
                    row["level"] = "bound"
                    row["result"] = f"at least {m['at_least']} (true {m['true']})"
            else:
                row["level"] = r["status"]
        else:
            row["what"] = "images"
            if "psnr" in m:
                row.update(psnr=m["psnr"], ssim=m["ssim"], level=image_level(m["psnr"]))
                row["label_accuracy"] = m.get("label_accuracy")
                chosen = (m.get("info") or {}).get("chosen")
                row["chosen"] = chosen
                row["result"] = f"{m['psnr']:.1f} dB, SSIM {m['ssim']:.2f}"
            else:
                row["level"] = r["status"]
        out.append(row)
    return out


def verdict(table: list[dict[str, Any]], dep: dict[str, Any], defenses: list[str]) -> dict:
    """The headline: what leaked without an added defense, and under each defense tried."""
    base = [r for r in table if r["id"] == r["id"].split("/")[0]]
    images = [r for r in base if r["what"] == "images" and r.get("psnr") is not None]
    default = next((r for r in base if r["id"] == "auto"), None)
    strongest = max(images, key=lambda r: r["psnr"], default=None)
    labels = next((r for r in base if r["id"] == "labels"), None)
    bsize = next((r for r in base if r["id"] == "batch-size"), None)
    v: dict[str, Any] = {
        "images": {
            "default_attack": "auto",
            "default_chose": default.get("chosen") if default else None,
            "default_psnr": default.get("psnr") if default else None,
            "default_ssim": default.get("ssim") if default else None,
            "strongest_attack": strongest["attack"] if strongest else None,
            "strongest_psnr": strongest["psnr"] if strongest else None,
            "strongest_ssim": strongest["ssim"] if strongest else None,
            "level": image_level(strongest["psnr"]) if strongest else "not measured",
            "attacks_run": len(images),
        },
        "labels": {
            "told": dep["labels_told"],
            "count_accuracy": labels.get("count_accuracy") if labels else None,
            "level": labels.get("level", "n/a") if labels else "n/a",
            "result": labels.get("result") if labels else None,
            "reason": labels.get("reason") if labels else None,
        },
        "batch_size": {
            "told": dep["batch_size_told"],
            "true": dep["batch_size"] * dep["clients"],
            "estimate": bsize.get("estimate") if bsize else None,
            "at_least": bsize.get("at_least") if bsize else None,
            "level": bsize.get("level", "n/a") if bsize else "n/a",
            "result": bsize.get("result") if bsize else None,
            "reason": bsize.get("reason") if bsize else None,
        },
        "defenses": [],
        "thresholds_db": {"leaked": LEAKED_DB, "partly": PARTLY_DB},
    }
    for spec in defenses:
        mine = {r["id"].split("/", 1)[1]: r for r in table if r["id"].startswith(spec + "/")}
        plain, aware, lab = mine.get("auto", {}), mine.get("auto-aware", {}), mine.get("labels")
        psnrs = [r["psnr"] for r in (plain, aware) if r.get("psnr") is not None]
        best = max(psnrs, default=None)
        v["defenses"].append({
            "defense": spec,
            "auto_psnr": plain.get("psnr"),
            "auto_ssim": plain.get("ssim"),
            "aware_psnr": aware.get("psnr"),
            "aware_ssim": aware.get("ssim"),
            "strongest_psnr": best,
            "level": image_level(best) if best is not None else plain.get("level", "n/a"),
            "labels_count_accuracy": lab.get("count_accuracy") if lab else None,
            "labels_level": lab.get("level") if lab else "n/a",
            "reason": plain.get("reason") or aware.get("reason"),
        })  # fmt: skip
    v["summary"] = summary(v)
    return v


def _db(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} dB"


def summary(v: dict[str, Any]) -> list[str]:
    """The verdict in a few sentences (the page's lead, report.json's `verdict.summary`)."""
    im, lab, bs = v["images"], v["labels"], v["batch_size"]
    out = []
    if im["strongest_psnr"] is None:
        out.append("Images: no attack could be run on this deployment (see the table).")
    else:
        head = {
            "leaked": "the private images leak",
            "partly": "the private images partly leak",
            "not recovered": "no attack of this battery rebuilt recognisable images at this budget",
        }[im["level"]]
        chose = f" (it chose {im['default_chose']})" if im.get("default_chose") else ""
        default = (
            f" The default attack a server would run without seeing the images reached "
            f"{_db(im['default_psnr'])}{chose}."
            if im["default_psnr"] is not None
            else ""
        )
        out.append(
            f"Images: {head}. The strongest of {im['attacks_run']} attacks, "
            f"{im['strongest_attack']}, reached {_db(im['strongest_psnr'])} PSNR (SSIM "
            f"{im['strongest_ssim']:.2f}).{default}"
        )
    if lab["result"]:
        told = "told to the server by the deployment; " if lab["told"] else "hidden, yet "
        out.append(
            f"Labels: {told}recovered from the update alone: {lab['result']} (count accuracy "
            f"{lab['count_accuracy']:.2f})."
        )
    elif lab["reason"]:
        out.append(f"Labels: not measured ({lab['reason']}).")
    if bs["result"]:
        told = f"told to the server (B = {bs['true']}); " if bs["told"] else "hidden; "
        out.append(f"Batch size: {told}the update alone shows {bs['result']}.")
    elif bs["reason"]:
        out.append(f"Batch size: the update does not tell ({bs['reason']}).")
    defs = [d for d in v["defenses"] if d["strongest_psnr"] is not None]
    if defs:
        parts = []
        for d in defs:
            acc = d["labels_count_accuracy"]
            labels = "" if acc is None else f", labels {acc:.2f}"
            parts.append(f"{d['defense']} {_db(d['strongest_psnr'])} ({d['level']}{labels})")
        out.append(
            "With one defense added (the default attack and its defense-aware variant, the "
            "better of the two): " + "; ".join(parts) + "."
        )
    return out


def build_report(
    plan: Any,
    records: list[dict[str, Any]],
    rounds: dict[str | None, Any],
    notes: list[str],
    environment: dict[str, Any],
    *,
    started: str,
    seconds: float,
    interrupted: bool,
    command: str,
    cpu_seconds: float | None = None,
    load: float | None = None,
) -> dict[str, Any]:
    """report.json's content (report.html renders exactly this, plus the images)."""
    base = rounds.get(None)
    obs = base[0] if base else None
    dep = deployment(plan.config, obs)
    privacy = {
        spec: rounds[spec][0].privacy for spec in plan.defenses if spec in rounds
    }  # DP-SGD's ε where the defense reports one
    table = rows(records, dep)
    notes = list(notes)
    bound = next((r for r in table if r["id"] == "batch-size"), {})
    if not dep["batch_size_told"] and bound.get("level") == "bound":
        notes.append(
            f"The batch size is hidden and this model's update only bounds it (at least "
            f"{bound['at_least']}), so the attacks that need it refused. A server can still "
            "guess it (try the bound and larger values); audit with the batch size told "
            "(--share-batch-size) to see what leaks once it is known."
        )
    return jsonable({
        "format": "gradinv-audit",
        "version": 1,
        "title": f"Gradient-inversion audit: {dep['model']} on {dep['data']}",
        "started": started,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_average": None if load is None else round(load, 2),
        "interrupted": interrupted,
        "deployment": dep,
        "threat_model": threat_model(dep),
        "verdict": verdict(table, dep, plan.defenses),
        "rows": table,
        "steps": records,
        "defenses_tried": list(plan.defenses),
        "privacy": {k: v for k, v in privacy.items() if v},
        "settings": {
            "budget": plan.budget,
            "generator": plan.generator,
            "inverter": plan.inverter,
            "config": plan.config.to_dict(),
            "command": command,
        },
        "environment": environment,
        "notes": list(notes),
    })  # fmt: skip
