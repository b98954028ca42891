"""Claims, report.md and figures of the learned-inversion experiment (see learned_inversion)."""

from __future__ import annotations

import json
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from ..report.figures import grid_image  # noqa: E402


def _cells(payload: dict) -> dict[str, dict]:
    return {c["config"]["id"]: c["metrics"] for c in payload["cells"]}


def _mean(m: dict, key: str = "psnr") -> float:
    v = m[key]["mean"]
    return float("nan") if v is None else float(v)


def _claim(cid: str, claim: str, criterion: str, measured: dict, holds: bool) -> dict:
    return {"id": cid, "claim": claim, "criterion": criterion, "measured": measured,
            "holds": bool(holds)}  # fmt: skip


def claims(payload: dict, s: Any) -> list[dict]:
    """The statements the experiment decides, each with its numeric criterion."""
    c = _cells(payload)
    ood = [d.split("@")[0] for d in s.ood]
    out = []
    m = c["learned/b1/fashion-mnist/B1"]
    learned, mean = _mean(m), _mean(m, "mean_image_psnr")
    inv = payload["inverters"]["b1"]
    out.append(_claim(
        "in-distribution",
        "with the default recipe (B = 1), learned inversion recovers Fashion-MNIST @test images "
        "from an untrained LeNet's update far better than the mean image",
        f"mean PSNR >= {s.target_psnr} dB and >= mean image + {s.target_gain} dB",
        {"learned_psnr": learned, "learned_std": m["psnr"]["std"], "mean_image_psnr": mean,
         "images": m["psnr"]["n"], "training_seconds": inv["seconds"],
         "training_cpu_seconds": inv["cpu_seconds"], "threads": inv["threads"]},
        learned >= s.target_psnr and learned - mean >= s.target_gain,
    ))  # fmt: skip
    gain_in = learned - mean
    gains = {}
    for name in ood:
        o = c[f"learned/b1/{name}/B1"]
        gains[name] = round(_mean(o) - _mean(o, "mean_image_psnr"), 3)
    out.append(_claim(
        "out-of-distribution",
        "out of distribution (digits, lfw, photo crops; gray, 28×28) the learned attack loses "
        "most of its advantage over the mean image",
        "on every OOD set, (learned − mean image) <= half the in-distribution gain",
        {"in_distribution_gain": round(gain_in, 3), "ood_gain": gains,
         "ood_learned_psnr": {n: _mean(c[f"learned/b1/{n}/B1"]) for n in ood}},
        all(g <= 0.5 * gain_in for g in gains.values()),
    ))  # fmt: skip
    count = c["count/per-size/random"]
    out.append(_claim(
        "hidden-batch-size",
        "a hidden batch size B ∈ {1, 2, 4} is recovered exactly by the per-size inverter's count "
        "head kept at or above the analytic rank bound (random labels)",
        f"exact-count rate >= {s.target_count} over B = 1, 2, 4",
        {"auto": count["overall"]["auto"], "network": count["overall"]["network"],
         "analytic_estimate": count["overall"]["analytic"],
         "analytic_bound": count["overall"].get("analytic_bound"),
         "per_batch_size": count["per_batch_size"],
         "unique_labels": c["count/per-size/unique"]["overall"],
         "set_head": c["count/set/random"]["overall"]},
        count["overall"]["auto"] >= s.target_count,
    ))  # fmt: skip
    per = {b: _mean(c[f"learned/per-size/fashion-mnist/B{b}/told"]) for b in s.batch_sizes}
    st = {b: _mean(c[f"learned/set/fashion-mnist/B{b}/told"]) for b in s.batch_sizes}
    out.append(_claim(
        "heads",
        "one image head per batch size reconstructs at least as well as one set head with "
        "present scores (batch size told)",
        "mean over B of PSNR(per-size) >= mean over B of PSNR(set) − 0.5 dB",
        {"per_size_psnr": per, "set_psnr": st,
         "b1_inverter_psnr": learned},
        np.mean(list(per.values())) >= np.mean(list(st.values())) - 0.5,
    ))  # fmt: skip
    rows, ok = {}, True
    for spec in s.defenses:
        lv, iv = (
            _mean(c[f"learned/{spec}/fashion-mnist/B1"]),
            _mean(c[f"ig/{spec}/fashion-mnist/B1"]),
        )
        rows[spec] = {"learned": lv, "ig": iv, "gain": round(lv - iv, 3)}
        if spec.startswith(("sign", "prune")):
            ok = ok and lv - iv >= s.target_defense_gain
    out.append(_claim(
        "defenses",
        "trained on defended updates, the learned attack beats defense-aware IG under signSGD "
        "and 99 % pruning (noise: reported)",
        f"learned − IG >= {s.target_defense_gain} dB under sign and under prune:ratio=0.99",
        rows, ok,
    ))  # fmt: skip
    ms = m["reconstruction_ms"]
    out.append(_claim(
        "speed", "a learned reconstruction (LeNet, B = 1) is one forward pass",
        f"median reconstruction time < {s.target_ms} ms (inverter loaded)",
        ms | {"ig_seconds_per_batch": c["ig/fashion-mnist/B1"]["seconds_per_batch"]},
        ms["median"] < s.target_ms,
    ))  # fmt: skip
    ig = c["ig/fashion-mnist/B1"]
    out.append(_claim(
        "ig-undefended",
        "on undefended updates at B = 1, pixel IG with the labels (and many iterations) "
        "reconstructs better than the learned attack — at a far higher cost per image",
        "IG mean PSNR > learned mean PSNR",
        {"ig_psnr": _mean(ig), "learned_psnr": learned,
         "ig_seconds": ig["seconds_per_batch"], "learned_ms": ms["median"],
         "ig_by_batch_size": {b: _mean(c[f"ig/fashion-mnist/B{b}"]) for b in s.batch_sizes},
         "learned_by_batch_size": per},
        _mean(ig) > learned,
    ))  # fmt: skip
    return out


# --- report ------------------------------------------------------------------------------------
def _row(cid: str, m: dict) -> str:
    if "overall" in m:
        return ""
    p = m["psnr"]
    psnr = "—" if p["mean"] is None else f"{p['mean']:.2f} ± {p['std']:.2f}"
    base = m.get("mean_image_psnr", {}).get("mean")
    count = m.get("count_accuracy")
    ms = m.get("reconstruction_ms", {}).get("median")
    seconds = m.get("seconds_per_batch")
    cost = f"{ms} ms" if ms is not None else f"{seconds} s"
    return (f"| `{cid}` | {psnr} ({p['n']}) | {'—' if base is None else f'{base:.2f}'} | "
            f"{'—' if count is None else count} | {cost} |")  # fmt: skip


def _figure(out: str, name: str, rows: list[tuple[str, torch.Tensor]]) -> str | None:
    rows = [(label, t) for label, t in rows if t is not None and len(t)]
    if not rows:
        return None
    n = min(len(t) for _, t in rows)
    stacked = torch.cat([t[:n] for _, t in rows])
    grid_image(stacked, scale=2, columns=n).save(os.path.join(out, name))
    return name


def _images(dirs: dict[str, str], cid: str) -> dict[str, torch.Tensor]:
    path = os.path.join(dirs.get(cid, ""), "images.safetensors")
    return load_file(path) if os.path.isfile(path) else {}


def _figures(out: str, payload: dict, dirs: dict[str, str]) -> dict[str, tuple[str, str]]:
    s = payload["settings"]
    figs: dict[str, tuple[str, str]] = {}
    a = _images(dirs, "learned/b1/fashion-mnist/B1")
    ig = _images(dirs, "ig/fashion-mnist/B1")
    if a:
        mean = a["mean"].expand_as(a["truth"])
        f = _figure(out, "in_distribution.png", [("truth", a["truth"]), ("learned", a["recon"]),
                                                 ("ig", ig.get("recon")), ("mean", mean)])  # fmt: skip
        figs["in_distribution"] = (f, "Fashion-MNIST @test, B = 1: truth, learned (one pass), "
                                      "IG (labels given), mean image")  # fmt: skip
    rows = []
    for data in s["ood"]:
        name = data.split("@")[0]
        t = _images(dirs, f"learned/b1/{name}/B1")
        rows += [(f"{name} truth", t.get("truth")), (f"{name} learned", t.get("recon"))]
    if rows:
        figs["ood"] = (_figure(out, "out_of_distribution.png", rows),
                       "out of distribution (digits, lfw, photos): truth above learned")  # fmt: skip
    rows = []
    for spec in s["defenses"]:
        lv, iv = (
            _images(dirs, f"learned/{spec}/fashion-mnist/B1"),
            _images(dirs, f"ig/{spec}/fashion-mnist/B1"),
        )
        rows += [("truth", lv.get("truth")), ("learned", lv.get("recon")), ("ig", iv.get("recon"))]
    if rows:
        figs["defenses"] = (_figure(out, "defenses.png", rows),
                            "per defense (" + ", ".join(s["defenses"]) + "): truth, learned "
                            "(trained on defended updates), defense-aware IG")  # fmt: skip
    b = max(s["batch_sizes"])
    p, st = (
        _images(dirs, f"learned/per-size/fashion-mnist/B{b}/told"),
        _images(dirs, f"learned/set/fashion-mnist/B{b}/told"),
    )
    if p:
        figs["batch"] = (_figure(out, "batch.png", [("truth", p["truth"]), ("per-size", p["recon"]),
                                                    ("set", st.get("recon"))]),
                         f"B = {b} (told): truth, per-size heads, set head")  # fmt: skip
    figs["psnr"] = (_bars(out, payload), "mean PSNR ± std per cell")
    return {k: v for k, v in figs.items() if v[0]}


def _bars(out: str, payload: dict) -> str:
    cells = [(c["config"]["id"], c["metrics"]) for c in payload["cells"] if "psnr" in c["metrics"]]
    cells = [(cid, m) for cid, m in cells if m["psnr"]["mean"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(cells) + 1.2))
    y = np.arange(len(cells))
    ax.barh(y, [m["psnr"]["mean"] for _, m in cells], xerr=[m["psnr"]["std"] for _, m in cells],
            color=["tab:blue" if cid.startswith("learned") else "tab:orange" for cid, _ in cells])  # fmt: skip
    base = [m.get("mean_image_psnr", {}).get("mean") for _, m in cells]
    ax.scatter([v for v in base if v is not None], [i for i, v in zip(y, base, strict=True) if v is not None],
               marker="|", color="k", s=80, label="mean image", zorder=3)  # fmt: skip
    ax.set_yticks(y, [cid for cid, _ in cells], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("PSNR (dB)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "psnr.png"), dpi=110)
    plt.close(fig)
    return "psnr.png"


def write(out: str, payload: dict, claims_: list[dict], dirs: dict[str, str]) -> None:
    command = "gradinv experiment learned-inversion" + (" --quick" if payload["quick"] else "")
    d = payload["deployment"]
    lines = [
        "# Learned inversion vs. IG vs. the mean image",
        "",
        f"Command: `{command} --out {out}` — {payload['total_s']} s on one torch thread. Untrained "
        f"`{d['model']}` (model seed {d['model_seed']}), {d['image_size']}×{d['image_size']} gray, "
        f"clients normalise with mean {d['mean']} / std {d['std']} (the deployment's, also for "
        "out-of-distribution clients). Inverters train on fashion-mnist@train only; the private "
        "images come from @test (or other data sets' @test). Batches have random labels.",
        "",
        "## Claims",
        "",
        "| id | claim | criterion | measured | holds |",
        "|---|---|---|---|---|",
    ]
    for c in claims_:
        measured = json.dumps(c["measured"]).replace("|", "/")
        lines.append(f"| {c['id']} | {c['claim']} | {c['criterion']} | `{measured}` | "
                     f"{'yes' if c['holds'] else '**no**'} |")  # fmt: skip
    lines += ["", "## Inverters", "", "| name | epochs | images | wall s | CPU s | held-out |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, inv in payload["inverters"].items():
        lines.append(f"| {name} | {inv['epochs']} | {inv['train_images']} | {inv['seconds']} | "
                     f"{inv['cpu_seconds']} | `{json.dumps(inv['val'].get('val_psnr'))}` |")  # fmt: skip
    lines += ["", "## Cells", "",
              "PSNR over the images whose batch was counted right (hidden B); the mean image "
              "is scored on all images of the cell.", "",
              "| cell | PSNR dB (images) | mean image dB | count accuracy | time per batch |",
              "|---|---|---|---|---|"]  # fmt: skip
    for c in payload["cells"]:
        row = _row(c["config"]["id"], c["metrics"])
        if row:
            lines.append(row)
    lines += ["", "## Counting hidden batch sizes", "",
              "| cell | network | auto | analytic | analytic bound | per B |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for c in payload["cells"]:
        m = c["metrics"]
        if "overall" in m:
            o = m["overall"]
            lines.append(f"| `{c['config']['id']}` | {o['network']} | {o['auto']} | "
                         f"{o['analytic']} | {o.get('analytic_bound')} | "
                         f"`{json.dumps(m['per_batch_size'])}` |")  # fmt: skip
    lines.append("")
    for _, (name, caption) in _figures(out, payload, dirs).items():
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
