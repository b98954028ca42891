"""report.md and the figures of the defense experiment: the privacy–utility plot, PSNR against
each defense's strength, and a montage of seed 0's reconstructions."""

from __future__ import annotations

import json
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from ...defenses import parse_defense  # noqa: E402
from .grid import NONE  # noqa: E402
from .summary import aware_gains, fmt  # noqa: E402

FAMILY_COLOURS = {"none": "k", "prune": "tab:blue", "noise": "tab:orange", "laplace": "tab:brown",
                  "sign": "tab:purple", "quantize": "tab:pink", "clip": "tab:gray",
                  "soteria": "tab:green", "precode": "tab:olive", "dpsgd": "tab:red"}  # fmt: skip


def short(spec: str) -> str:
    """'prune:ratio=0.9' -> 'prune 0.9'; 'dpsgd:noise=1,clip=1' -> 'dpsgd 1,1'."""
    name, _, opts = spec.partition(":")
    return f"{name} {','.join(v.split('=')[1] for v in opts.split(','))}" if opts else name


def privacy_utility_plot(path: str, rows: dict[str, dict[str, Any]]) -> bool:
    """PSNR of the blind-chosen attack against FedAvg test accuracy, one point per defense
    setting; False when no setting has both."""
    points = [(s, r) for s, r in rows.items()
              if r["accuracy"]["mean"] is not None and r["best"]["mean"] is not None]  # fmt: skip
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for spec, r in points:
        family = spec.split(":")[0]
        ax.errorbar(r["accuracy"]["mean"], r["best"]["mean"], xerr=r["accuracy"]["std"],
                    yerr=r["best"]["std"], fmt="o", ms=5, capsize=2,
                    color=FAMILY_COLOURS.get(family, "tab:cyan"))  # fmt: skip
        ax.annotate(short(spec), (r["accuracy"]["mean"], r["best"]["mean"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")  # fmt: skip
    base = [r["baseline"]["mean"] for _, r in points if r["baseline"]["mean"] is not None]
    if base:
        ax.axhline(sum(base) / len(base), ls="--", color="grey", lw=0.8,
                   label="mean-image baseline (nothing leaked)")  # fmt: skip
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("FedAvg test accuracy (utility; higher is better)")
    ax.set_ylabel("PSNR of the blind-chosen attack (dB; lower is more private)")
    ax.set_title("privacy–utility: DLG's LeNet, Fashion-MNIST 28×28, B = 1", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def strength_plot(path: str, rows: dict[str, dict[str, Any]]) -> bool:
    """PSNR of each attack against the strength of prune, noise and DP-SGD (panels)."""
    panels = {"prune": ("pruning ratio", lambda d: d.ratio, False),
              "noise": ("noise variance", lambda d: d.std**2, True),
              "dpsgd": ("noise multiplier σ (C = 1)", lambda d: d.noise, False)}  # fmt: skip
    present = [p for p in panels if any(s.startswith(p + ":") for s in rows)]
    if not present:
        return False
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.4), squeeze=False)
    for ax, family in zip(axes[0], present, strict=True):
        xlabel, strength, log = panels[family]
        specs = sorted((s for s in rows if s.startswith(family + ":")),
                       key=lambda s: strength(parse_defense(s)))  # fmt: skip
        xs = [strength(parse_defense(s)) for s in specs]
        names = sorted({n for s in specs for n in rows[s]["variants"]})
        for n in names:
            ys = [rows[s]["variants"].get(n, {}).get("mean") for s in specs]
            ax.plot(xs, [float("nan") if y is None else y for y in ys],
                    "o--" if "+aware" in n else "o-", ms=3, lw=1, label=n)  # fmt: skip
        ax.plot(xs, [rows[s]["baseline"]["mean"] for s in specs], ":", color="grey",
                label="mean image")  # fmt: skip
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean PSNR (dB)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def montage(path: str, sweep: str, records: list[dict[str, Any]], block: str, seed: int) -> bool:
    """Seed `seed`'s reconstructions: one row per defense setting, truth first, then one column
    per attack variant (blank where it did not run)."""
    cells = [r for r in records if r["config"]["kind"] == "attack"
             and r["config"]["block"] == block and r["config"]["seed"] == seed
             and "metrics" in r]  # fmt: skip
    if not cells:
        return False
    defenses = list(dict.fromkeys(r["config"]["defense"] for r in cells))
    variants = sorted({r["config"]["attack"] + ("+aware" if r["config"]["aware"] else "")
                       for r in cells})  # fmt: skip
    tile = Image.open(os.path.join(sweep, "cells", cells[0]["dir"], "truth.png"))
    w, h = tile.size
    label_w, head_h = 110, 14
    sheet = Image.new(
        "RGB", (label_w + w * (len(variants) + 1), head_h + h * len(defenses)), "white"
    )
    from PIL import ImageDraw

    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(["truth", *variants]):
        draw.text((label_w + j * w + 2, 1), name[:9], fill="black")
    for i, defense in enumerate(defenses):
        draw.text((2, head_h + i * h + h // 2 - 5), short(defense)[:18], fill="black")
        for r in cells:
            c = r["config"]
            if c["defense"] != defense:
                continue
            v = c["attack"] + ("+aware" if c["aware"] else "")
            folder = os.path.join(sweep, "cells", r["dir"])
            sheet.paste(Image.open(os.path.join(folder, "truth.png")), (label_w, head_h + i * h))
            j = variants.index(v) + 1
            sheet.paste(Image.open(os.path.join(folder, "reconstruction.png")),
                        (label_w + j * w, head_h + i * h))  # fmt: skip
    sheet.save(path)
    return True


def write_markdown(out: str, payload: dict[str, Any]) -> None:
    """report.md: the claims table, one table per block, the figures, the settings."""
    s = payload["settings"]
    lines = [
        "# Defenses against gradient inversion: leakage and utility",
        "",
        f"Command: `{payload['command']}` — {payload['total_s']} s wall (this session; a "
        "resumed run counts only its own), "
        f"{payload['cpu_s']} s CPU over all cells (1 torch thread per cell, "
        f"{payload['workers']} worker(s), engine {payload['engine']}; shared machine: times are "
        "upper bounds). "
        f"Private batches: `{s['data']}` ({s['image_size']}×{s['image_size']}, labels known to the "
        f"server); seeds {list(s['seeds'])} (batch, model initialisation and attack start). "
        "Every choice among attacks is blind (lowest defense-aware cosine matching loss per "
        "seed); `oracle` columns (PSNR-best per seed) are upper bounds, never claims. Baseline: "
        "the PSNR of the mean image of the @train split (an attack that learned nothing).",
        "",
        "| id | claim | criterion | measured | holds |",
        "|---|---|---|---|---|",
    ]
    for c in payload["claims"]:
        measured = json.dumps(c["measured"], ensure_ascii=False).replace("|", "/")
        lines.append(f"| {c['id']} | {c['claim']} | {c['criterion']} | `{measured}` | "
                     f"{'yes' if c['holds'] else '**no**'} |")  # fmt: skip
    for block, rows in payload["summary"].items():
        lines += ["", f"## {block}", ""] + _table(rows)
        lines += _aware_table(rows)
    lines += ["", "## Figures", ""]
    for name in payload["figures"]:
        lines.append(f"![{name}]({name})")
    failed = payload["failed_cells"]
    if failed:
        lines += ["", f"## Failed cells ({len(failed)})", ""]
        lines += [f"- `{f['cell']}`: {f['error']}" for f in failed]
    lines += ["", "Per-cell records: `results.json` (and `sweep/results.jsonl`, one directory "
              "per cell in `sweep/cells/`); claims: `claims.json`."]  # fmt: skip
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def _aware_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Defense-aware against plain, per defense and attack, on the same observations."""
    lines = []
    for spec, r in rows.items():
        for attack, v in aware_gains(r).items():
            lines.append(f"| {short(spec)} | {attack} | {fmt(v['plain'])} | {fmt(v['aware'])} | "
                         f"{fmt(v['gain'])} |")  # fmt: skip
    if not lines:
        return []
    head = ["", "Defense-aware against plain (PSNR in dB; gain: per-seed difference on the same "
            "observation, mean ± std):", "", "| defense | attack | plain | defense-aware | gain |",
            "|---|---|---|---|---|"]  # fmt: skip
    return head + lines


def _table(rows: dict[str, dict[str, Any]]) -> list[str]:
    names = sorted({n for r in rows.values() for n in r["variants"]})
    head = ["defense", "ε", "cosine", "accuracy", "baseline", *names, "blind best", "oracle"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec, r in rows.items():
        eps = "–" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        cells = [short(spec) if spec != NONE else "none", eps, fmt(r["update_cosine"], 3),
                 fmt(r["accuracy"], 3), fmt(r["baseline"]),
                 *[fmt(r["variants"].get(n)) for n in names], fmt(r["best"]),
                 fmt(r["best_oracle"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("PSNR in dB, mean ± std over seeds; `X+aware` is attack X with "
                 "`defense_aware=true`; cosine: defended vs clean update of the attacked batch.")  # fmt: skip
    return lines
