"""The defense experiment: defense × strength × attack on DLG's LeNet (Fashion-MNIST, B = 1) and
closed forms on mlp4, over seeds; FedAvg utility per defense; the claims of Zhu et al. (2019) and
of the defense-aware literature measured with blind choices only.

    result = run_defense_experiment("runs/defenses", quick=True)
    print([(c["id"], c["holds"]) for c in result["claims"]])
    # or: gradinv experiment defenses --quick --out runs/defenses

The experiment is a list of cells (`grid.cells(settings)`, JSON-able dicts) run by the module-level
`cell.cell(config, out_dir) -> dict`, so any runner that takes a cell function can run it
(`gradinv.sweep.run_sweep` with one axis holding the cells, see runner.py)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ...errors import GradinvError
from .cell import cell
from .grid import PRESETS, DefenseSettings, cells, claims_settings, full_settings, quick_settings
from .report import montage, privacy_utility_plot, strength_plot, write_markdown
from .runner import run_cells
from .summary import claims, summarise

__all__ = [
    "PRESETS",
    "DefenseSettings",
    "cell",
    "claims_settings",
    "cells",
    "full_settings",
    "quick_settings",
    "run_defense_experiment",
]


def run_defense_experiment(
    out: str,
    quick: bool = False,
    settings: DefenseSettings | None = None,
    preset: str | None = None,
    seeds: int | None = None,
    engine: str = "local",
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every cell through the sweep runner (`engine`, `workers`, `resume` as in `gradinv
    sweep`), then write results.json, claims.json, report.md and the figures into `out` (which
    the caller has checked); returns {"claims", "summary", ...}. `preset` names the grid
    (quick, claims, full; `quick=True` is preset quick, the default full), `seeds` replaces its
    seeds by 0..seeds-1; `settings` replaces both (the Python API's own grid)."""
    preset = preset or ("quick" if quick else "full")
    if preset not in PRESETS:
        raise GradinvError(f"unknown grid {preset!r}; expected one of {', '.join(PRESETS)}")
    if seeds is not None and seeds < 1:
        raise GradinvError(f"--seeds must be >= 1, got {seeds}")
    s = settings or PRESETS[preset]()
    if seeds is not None:
        s = replace(s, seeds=tuple(range(seeds)))
    quick = preset == "quick"
    command = (f"gradinv experiment defenses --grid {preset}"
               + (f" --seeds {seeds}" if seeds is not None else "") + f" --out {out}"
               + (f" --engine {engine} --workers {workers}" if workers > 1 else ""))  # fmt: skip
    if settings is not None:
        command = "run_defense_experiment(settings=...) (Python API; settings in this file)"
    todo = cells(s)
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    if s.generator is not None:  # trained once, before the workers start (they reuse it)
        from ...generative import cached_generator

        t0 = time.perf_counter()
        directory = cached_generator(**s.generator)
        if log:
            log(f"generator: {directory} ({time.perf_counter() - t0:.0f} s)")
    records, sweep_dir = run_cells(todo, out, engine, workers, resume, progress, overwrite)
    summary = summarise(records)
    table = claims(summary)
    figures = []
    first = s.blocks[0].name
    for name, draw in (("privacy_utility.png", lambda p: privacy_utility_plot(p, summary[first])),
                       ("psnr_vs_strength.png", lambda p: strength_plot(p, summary[first])),
                       ("reconstructions.png",
                        lambda p: montage(p, sweep_dir, records, first, s.seeds[0]))):  # fmt: skip
        if draw(os.path.join(out, name)):
            figures.append(name)
    failed = [{"cell": r["cell"], "error": r["error"]} for r in records if "error" in r]
    payload = {
        "command": command,
        "quick": quick,
        "preset": None if settings is not None else preset,
        "settings": s.to_dict(),
        "claims": table,
        "summary": summary,
        "figures": figures,
        "failed_cells": failed,
        "total_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(sum(r.get("metrics", {}).get("cpu_s", 0) for r in records), 1),
        "engine": engine,
        "workers": workers,
        "cells": records,
    }
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(payload, fh, indent=1, allow_nan=False)
    with open(os.path.join(out, "claims.json"), "w") as fh:
        json.dump(table, fh, indent=2, allow_nan=False, ensure_ascii=False)
    write_markdown(out, payload)
    return payload
