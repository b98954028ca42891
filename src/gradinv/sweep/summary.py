"""summary.md (swept settings -> mean ± std over seeds) and one plot per swept setting."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .grid import Cell, canonical
from .results import succeeded

OVER = ("seed",)  # settings averaged over rather than shown as rows


def _text(value: Any) -> str:
    return value if isinstance(value, str) else canonical(value)


def _stat(values: list[float]) -> str:
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not values:
        return "–"
    mean = float(np.mean(values))
    if len(values) == 1 or not math.isfinite(mean):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {float(np.std(values, ddof=1)):.2g}"


def summary_rows(
    cells: Sequence[Cell], records: dict[str, dict[str, Any]], metrics: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per combination of the swept settings other than OVER."""
    keys = [k for k in (cells[0].swept if cells else {}) if k not in OVER]
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(canonical([cell.swept[k] for k in keys]), []).append(cell)
    header = [*keys, "cells", "failed", *metrics]
    rows = []
    for members in groups.values():
        ok = [records[c.id]["metrics"] for c in members if succeeded(records.get(c.id))]
        failed = sum(1 for c in members if c.id in records and not succeeded(records[c.id]))
        row = [_text(members[0].swept[k]) for k in keys]
        row += [f"{len(ok)}/{len(members)}", str(failed)]
        row += [_stat([m.get(name) for m in ok]) for name in metrics]
        rows.append(row)
    return header, rows


def _plot(path: str, key: str, metric: str, cells: Sequence[Cell], records: dict) -> None:
    # the object API, not pyplot: no global backend switch inside someone else's process
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels: list[str] = []
    points: dict[str, list[float]] = {}
    for cell in cells:
        label = _text(cell.swept[key])
        if label not in points:
            labels.append(label)
            points[label] = []
        record = records.get(cell.id)
        value = record["metrics"].get(metric) if succeeded(record) else None
        if isinstance(value, (int, float)) and math.isfinite(value):
            points[label].append(float(value))
    fig = Figure(figsize=(max(4.0, 0.8 * len(labels) + 2), 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for x, label in enumerate(labels):
        ys = points[label]
        ax.scatter([x] * len(ys), ys, s=12, color="0.6", zorder=2)
    means = [np.mean(points[lb]) if points[lb] else np.nan for lb in labels]
    stds = [np.std(points[lb], ddof=1) if len(points[lb]) > 1 else 0.0 for lb in labels]
    ax.errorbar(range(len(labels)), means, yerr=stds, marker="o", capsize=4, zorder=3)
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 6 else 0)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {key} (mean ± std over the other settings; dots: cells)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def write_summary(
    out: str,
    cells: Sequence[Cell],
    records: dict[str, dict[str, Any]],
    metrics: Sequence[str] = ("psnr", "ssim", "time_s"),
) -> str:
    """Write DIR/summary.md and DIR/plots/<metric>_vs_<setting>.png; returns summary.md's path."""
    mine = {c.id: records[c.id] for c in cells if c.id in records}
    ok = sum(1 for r in mine.values() if succeeded(r))
    failed = len(mine) - ok
    header, rows = summary_rows(cells, mine, metrics)
    lines = [
        "# Sweep summary",
        "",
        f"{len(cells)} cells: {ok} succeeded, {failed} failed, {len(cells) - len(mine)} not run. "
        f"Metrics are mean ± std (sample std) over {', '.join(OVER)} and any other cells of a row; "
        "raw numbers: results.jsonl, one report per cell: cells/<ID>/.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    plotted = [m for m in metrics if any(m in r.get("metrics", {}) for r in mine.values())][:1]
    keys = [k for k in (cells[0].swept if cells else {}) if k not in OVER]
    if plotted and keys:
        os.makedirs(os.path.join(out, "plots"), exist_ok=True)
        lines += ["", "## Plots", ""]
        for key in keys:
            name = f"{plotted[0]}_vs_{re.sub(r'[^A-Za-z0-9._-]', '_', key)}.png"
            _plot(os.path.join(out, "plots", name), key, plotted[0], cells, mine)
            lines.append(f"![{plotted[0]} against {key}](plots/{name})")
    errors = [(cid, r["error"]) for cid, r in mine.items() if not succeeded(r)]
    if errors:
        lines += ["", "## Failed cells", ""]
        lines += [f"- `{cid}`: {str(msg).splitlines()[0]}" for cid, msg in errors[:50]]
        if len(errors) > 50:
            lines.append(f"- … and {len(errors) - 50} more (results.jsonl)")
    path = os.path.join(out, "summary.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path
