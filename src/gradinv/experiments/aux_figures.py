"""Image grids (truth row + one row per attack, from the cells' saved reconstructions) and
report.md of the aux-distribution experiment."""

from __future__ import annotations

import json
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..report import grid_image  # noqa: E402
from .aux_distribution import CLAIMED, IN_DISTRIBUTION, MIXTURE, AuxSettings  # noqa: E402
from .aux_report import CASES, HYBRID, labels_of  # noqa: E402


def _load(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "reconstruction.safetensors"))


def draw_grids(out: str, s: AuxSettings, table: dict[tuple, dict]) -> dict[str, str]:
    """grids/<set>_<case>.png: the private images (seeds in order) above every attack's
    reconstruction of them (Hungarian-matched order); returns {"set case": file}."""
    cells = os.path.join(out, "sweep", "cells")
    os.makedirs(os.path.join(out, "grids"), exist_ok=True)
    labels = labels_of(s)
    files = {}
    for spec in s.sets:
        for case in CASES:
            seeds = sorted({k[2] for k in table if k[:2] == (spec, case) and k[3] == 0})
            if not seeds:
                continue
            rows = _rows(cells, table, spec, case, seeds, labels)
            name = f"{spec.replace('@', '_')}_{case}.png"
            _figure(os.path.join(out, "grids", name), rows, ["truth", *labels], f"{spec}, {case}")
            files[f"{spec} {case}"] = f"grids/{name}"
    return files


def _rows(cells, table, spec, case, seeds, labels):  # noqa: ANN001, ANN202
    """[truth, one tensor per label], each (images of all seeds, C, H, W); white where missing."""
    truth: list[torch.Tensor] = []
    rows: dict[str, list[torch.Tensor]] = {label: [] for label in labels}
    for seed in seeds:
        entry = table[(spec, case, seed, 0)]
        loaded = {
            cid: _load(os.path.join(cells, cid)) for cid in {e["cell"] for e in entry.values()}
        }
        first = next(iter(loaded.values()))
        truth.append(first["truth"])
        for label in labels:
            e = entry.get(label)
            key = e.get("source", label) if e else None
            rec = loaded[e["cell"]].get(key) if e else None
            rows[label].append(rec if rec is not None else torch.ones_like(first["truth"]))
    return [torch.cat(truth)] + [torch.cat(rows[label]) for label in labels]


def _figure(path: str, rows: list[torch.Tensor], names: list[str], title: str) -> None:
    n = rows[0].shape[0]
    picture = np.asarray(grid_image(torch.cat(rows), scale=2, columns=n))
    fig, ax = plt.subplots(figsize=(picture.shape[1] / 80 + 1.2, picture.shape[0] / 80 + 0.4))
    ax.imshow(picture)
    step = picture.shape[0] / len(rows)
    ax.set_yticks([step * (i + 0.5) for i in range(len(rows))], names, fontsize=8)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(rows: list[dict], cases: bool) -> list[str]:
    head = "| set | case | attack | n | PSNR (dB) | SSIM | Δ PSNR vs ig [95 % CI] |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = (f"{r['delta_ig']:+.2f} [{r['delta_ig_low']:+.2f}, {r['delta_ig_high']:+.2f}]"
              if r["attack"] != "ig" else "—")  # fmt: skip
        lines.append(f"| {r['set']} | {r['case']} | {r['attack']} | {r['n']} | "
                     f"{r['psnr']:.2f} ± {r['psnr_std']:.2f} | {r['ssim']:.3f} ± {r['ssim_std']:.3f} "
                     f"| {ci} |")  # fmt: skip
    return lines


def write_markdown(out: str, payload: dict[str, Any], claims: list[dict]) -> None:
    s = payload["settings"]
    aux, mix = s["aux"], s["mixture"]
    lines = [
        "# Generative priors under a shift of the auxiliary distribution",
        "",
        f"Command: `{payload['command']}`. Cells' attack time summed: "
        f"{sum(v['total'] for v in payload['attack_seconds'].values()):.0f} s (one torch thread "
        "per cell, a busy shared machine: times are upper bounds); this invocation "
        f"{payload['total_s']} s, of which {payload['generators_s']} s training or loading "
        "generators (a --resume reuses finished cells). Untrained LeNet (PyTorch's init, model "
        f"seed {s['model_seed']}), 1×28×28, FedSGD, labels shared, {s['dtype']}.",
        "",
        f"Generator (`aux`): DCGAN on `{aux['data']}`, {aux['epochs']} epochs"
        + (f", first {aux['max_images']} images" if aux["max_images"] else "")
        + f". Mixture generator (`gias-mixture`): `{mix['data']}`, {mix['epochs']} epoch(s). "
        f"Private batches: `@test` splits; {s['seeds_b1']} seeds of batch size 1, {s['seeds_b4']} "
        "of batch size 4 per composition (lfw has 2 classes: its 'unique' batches are `repeat:2`).",
        "",
        "`gias+ig`: GIAS's reconstruction refined by pixel IG in the same cell (what `ig "
        "--attack-opt init=gias` computes). "
        f"`{HYBRID}`: per batch, whichever of {', '.join(s['hybrid'])} has the lower cosine "
        "matching loss (float64; `auto`'s blind choice, no ground truth). Δ: PSNR difference to "
        "pixel IG paired by image, mean and 95 % t-interval over images (images of one batch are "
        "not independent); PSNR capped at 50 dB (exact for 8-bit images). "
        f"Claims (i)-(ii) are about `{CLAIMED}`, (iv) about `{s['robust']}`.",
        "",
        "## Claims",
        "",
        "| id | claim | criterion | measured | holds |",
        "|---|---|---|---|---|",
    ]
    for c in claims:
        measured = json.dumps(c["measured"]).replace("|", "/")
        lines.append(f"| {c['id']} | {c['claim']} | {c['criterion']} | `{measured}` | "
                     f"{'yes' if c['holds'] else '**no**'} |")  # fmt: skip
    lines += ["", "## All batches pooled, per set", "", *_table(payload["pooled"], False), ""]
    lines += ["## Per set and case", "", *_table(payload["rows"], True), ""]
    lines += ["## Hybrid choices (images per candidate)", "",
              f"`{json.dumps(payload['hybrid_choices'])}`", ""]  # fmt: skip
    lines += ["## Attack time per cell (s)", "", f"`{json.dumps(payload['attack_seconds'])}`", ""]
    if payload["failed_cells"]:
        lines += [f"**{len(payload['failed_cells'])} cells failed** (see sweep/results.jsonl).", ""]
    lines += ["## Grids", ""]
    for key, name in payload["grids"].items():
        lines += [f"### {key}", "", f"![{key}]({name})", ""]
    lines.append(f"In distribution: `{IN_DISTRIBUTION}`; mixture spec `{MIXTURE}`.")
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
