"""Tables in README.md and docs/*.md are generated from the result files in docs/results, never
typed by hand: a table sits between `<!-- table:NAME[:ARG] -->` and `<!-- /table -->`, and
`python -m gradinv.report.tables --write` regenerates every one (a test fails when a document and
its results disagree). Each result file names the command that produced it."""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Callable
from typing import Any

BLOCK = re.compile(r"(<!-- table:([\w-]+)(?::([^ ]*))? -->\n)(.*?)(<!-- /table -->)", re.S)


def _load(root: str, path: str) -> Any:
    with open(os.path.join(root, path)) as fh:
        return json.load(fh)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return "—"
        return f"{value:.{digits}f}"
    return str(value)


def _rows(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _source(data: dict[str, Any], path: str) -> str:
    command = data.get("command", "?") if isinstance(data, dict) else "?"
    return f"\n_From `{path}`, written by `{command}`._\n"


# --- one renderer per result file --------------------------------------------------------------
def defaults(root: str, arg: str | None) -> str:
    path = arg or "docs/results/defaults.json"
    data = _load(root, path)
    rows = []
    for r in data["rows"]:
        rows.append([f"`{r['attack']}`", r["model"], len(r["psnr"]), _fmt(r["median"]),
                     _fmt(r["p10"]), _fmt(r["min"]), f"{r['at_least_25']}/{len(r['psnr'])}",
                     _fmt(r["seconds_median"])])  # fmt: skip
    header = ["attack", "model", "seeds", "median PSNR (dB)", "10th percentile", "min",
              "≥ 25 dB", "median seconds"]  # fmt: skip
    return _rows(header, rows) + _source(data, path)


def iteration_cost(root: str, arg: str | None) -> str:
    path = arg or "docs/results/iteration_cost.json"
    data = _load(root, path)
    before = {(r["model"], r["batch"]): r for r in data.get("before", {}).get("rows", [])}
    rows = []
    for r in data["after"]["rows"]:
        b = before.get((r["model"], r["batch"]))
        rows.append([r["model"], r["batch"], _fmt(r["train_step_ms"]), _fmt(r["iteration_ms"]),
                     f"{r['ratio']:.2f}×", "—" if b is None else f"{b['ratio']:.2f}×",
                     f"{r['restarts4_over_1']:.2f}×",
                     "—" if b is None else f"{b['restarts4_over_1']:.2f}×"])  # fmt: skip
    header = ["model", "batch", "train step (ms)", "IG iteration (ms)", "ratio", "ratio before",
              "4 restarts / 1", "4 restarts / 1 before"]  # fmt: skip
    return _rows(header, rows) + _source(data, path)


def time_to_psnr(root: str, arg: str | None) -> str:
    path = arg or "docs/results/time_to_psnr.json"
    data = _load(root, path)
    rows = []
    for case, after in data["after"].items():
        if not isinstance(after, dict):
            continue
        before = data.get("before", {}).get(case, {})
        rows.append([case, _fmt(before.get("to_20db_median_s")), _fmt(after["to_20db_median_s"]),
                     _fmt(before.get("to_30db_median_s")), _fmt(after["to_30db_median_s"]),
                     _fmt(before.get("final_psnr_median")), _fmt(after["final_psnr_median"])])  # fmt: skip
    header = ["attack, model (B=1)", "to 20 dB before (s)", "after", "to 30 dB before (s)",
              "after", "final PSNR before (dB)", "after"]  # fmt: skip
    return _rows(header, rows) + _source(data, path)


def claims(root: str, arg: str | None) -> str:
    """A claims.json table: id, claim, criterion, holds (measured values are in the file)."""
    path = arg or ""
    data = _load(root, path)
    rows = [[c["id"], c["claim"], c["criterion"], "yes" if c["holds"] else "**no**"] for c in data]
    meta_path = os.path.join(os.path.dirname(path), "results.json")
    command = "?"
    if os.path.exists(os.path.join(root, meta_path)):
        command = _load(root, meta_path).get("command", "?")
    return _rows(["id", "claim", "criterion", "holds"], rows) + (
        f"\n_From `{path}`, written by `{command}`._\n"
    )


def batch_size(root: str, arg: str | None) -> str:
    path = arg or "docs/results/batch_size.json"
    data = _load(root, path)
    rows = [[r["model"], r["batch_size"], _fmt(r["estimate"]), r["at_least"], r["layer"]]
            for r in data["rows"]]  # fmt: skip
    return _rows(["model", "true B", "estimate", "at least", "layer"], rows) + _source(data, path)


def sweep_scaling(root: str, arg: str | None) -> str:
    path = arg or "docs/results/sweep_scaling.json"
    data = _load(root, path)
    rows = []
    for r in data["runs"]:
        rows.append([r["engine"], r["workers"], r["cells"], _fmt(r["wall_s"]),
                     _fmt(r["cells_per_min"], 2), f"{_fmt(r['speedup'], 2)}×",
                     _fmt(r["mean_cell_time_s"], 2),
                     f"{_fmt(r['load_mean'])} / {_fmt(r['load_max'])}"])  # fmt: skip
    header = ["engine", "workers", "cells", "wall (s)", "cells/min", "speed-up",
              "attack s/cell", "load avg (mean / max)"]  # fmt: skip
    over = [[o["engine"], _fmt(o["startup_s"]), _fmt(o["per_cell_s"], 3), _fmt(o["wall_s"]),
             o["cells"]] for o in data.get("overhead", [])]  # fmt: skip
    overhead = _rows(["engine", "start-up until the first cell (s)", "overhead per cell (s)",
                      "wall for the empty cells (s)", "empty cells"], over)  # fmt: skip
    return _rows(header, rows) + "\n" + overhead + _source(data, path)


def closed_forms(root: str, arg: str | None) -> str:
    path = arg or "docs/results/closed_forms.json"
    data = _load(root, path)
    rows = []
    for r in data["rows"]:
        rows.append([f"`{r['attack']}`", r["model"], r["width"] or "—", r["image_size"],
                     r["dtype"], r["batch_size"], f"{r['success_rate']:.0%}",
                     _fmt(r["psnr_min"]), r["certified"] if r["certified"] is not None else "—",
                     r["cert_wrong"], _fmt(r["attack_s"])])  # fmt: skip
    header = ["attack", "model", "width", "image", "dtype", "B", "≥ 60 dB", "min PSNR",
              "certified", "wrong certificates", "seconds"]  # fmt: skip
    return _rows(header, rows) + _source(data, path)


def memory(root: str, arg: str | None) -> str:
    path = arg or "docs/results/memory.json"
    data = _load(root, path)
    rows = [[r["case"], _fmt(r["baseline_mb"], 0), _fmt(r["peak_mb"], 0), _fmt(r["attack_mb"], 0),
             _fmt(r["seconds"], 1)] for r in data["rows"]]  # fmt: skip
    header = ["case", "baseline RSS (MB)", "peak RSS (MB)", "added by the attack (MB)", "seconds"]
    return _rows(header, rows) + _source(data, path)


def lbfgs(root: str, arg: str | None) -> str:
    path = arg or "docs/results/lbfgs.json"
    data = _load(root, path)
    rows = [[r["history"], "yes" if r["line_search"] else "no (fixed step)",
             _fmt(r["psnr_median"]), _fmt(min(r["psnr"])), _fmt(r["seconds_median"])]
            for r in data["rows"]]  # fmt: skip
    header = ["history", "line search", "median PSNR (dB)", "min", "median seconds"]
    return _rows(header, rows) + _source(data, path)


def labels(root: str, arg: str | None) -> str:
    """Per strategy and model state: mean count accuracy and exact rate over the cells with B > 1."""
    path = arg or "docs/results/labels-full/results.json"
    data = _load(root, path)
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in data["rows"]:
        if r["batch_size"] > 1:
            cells.setdefault((r["strategy"], r["state"]), []).append(r)
    states = sorted({s for _, s in cells})
    rows = []
    for strategy in sorted({s for s, _ in cells}):
        row = [f"`{strategy}`"]
        for state in states:
            sel = cells.get((strategy, state), [])
            acc = statistics.mean(r["count_accuracy"] for r in sel) if sel else None
            exact = statistics.mean(r["exact_rate"] for r in sel) if sel else None
            row += [_fmt(acc, 3), _fmt(exact, 2)]
        rows.append(row)
    header = ["strategy"] + [f"{s} {k}" for s in states for k in ("count acc.", "exact")]
    return _rows(header, rows) + _source(data, path)


def learned_targets(root: str, arg: str | None) -> str:
    """The learned-inversion targets (benchmarks/learned_targets.py): measured vs. target."""
    path = arg or "docs/results/learned_targets.json"
    data = _load(root, path)
    c, inv = data["cells"], data["inverters"]

    def ms(m: dict[str, Any]) -> str:
        return f"{_fmt(m['mean'])} ± {_fmt(m['std'])} (n={m['n']})"

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    b1, ig = c["learned/b1/fashion-mnist/B1"], c["ig/fashion-mnist/B1"]
    gain = b1["psnr"]["mean"] - b1["mean_image_psnr"]["mean"]
    t = inv["b1"]
    rows = [
        ["B = 1 PSNR on fashion-mnist@test (dB)", ms(b1["psnr"]), "≥ 20",
         met(b1["psnr"]["mean"] >= 20)],
        ["… above the mean image (dB)", f"{_fmt(gain)} (mean image {ms(b1['mean_image_psnr'])})",
         "≥ 8", met(gain >= 8)],
        [f"… pixel IG, labels given, {data['settings']['ig_iterations']} iterations (dB)",
         ms(ig["psnr"]), "—", "—"],
        ["default recipe's training (B = 1)", f"{t['epochs']} epochs, {t['train_images']} images, "
         f"{_fmt(t['seconds'], 0)} s wall / {_fmt(t['cpu_seconds'], 0)} s CPU", "—", "—"],
        ["one reconstruction (median / max ms)", f"{_fmt(b1['reconstruction_ms']['median'])} / "
         f"{_fmt(b1['reconstruction_ms']['max'])}", "< 50",
         met(b1["reconstruction_ms"]["median"] < 50)],
    ]  # fmt: skip
    count = c["count/per-size/random"]["per_batch_size"]
    for b, r in count.items():
        rows.append([f"hidden B = {b} counted exactly (network / auto / analytic estimate / "
                     "analytic bound)",
                     f"{r['network']:.0%} / {r['auto']:.0%} / {r['analytic']:.0%} / "
                     f"{r['analytic_bound']:.0%} ({r['batches']} batches)", "≥ 95 %",
                     met(max(r["network"], r["auto"]) >= 0.95)])  # fmt: skip
    overall = c["count/per-size/random"]["overall"]
    rows.append(["hidden B ∈ {1, 2, 4} counted exactly, overall (network / auto)",
                 f"{overall['network']:.0%} / {overall['auto']:.0%}", "≥ 95 %",
                 met(max(overall["network"], overall["auto"]) >= 0.95)])  # fmt: skip
    for name in (k for k in inv if k not in ("b1", "per-size")):
        learned, base = c[f"learned/{name}/fashion-mnist/B1"], c[f"ig/{name}/fashion-mnist/B1"]
        diff = learned["psnr"]["mean"] - base["psnr"]["mean"]
        rows.append([f"`{name}`: learned − defense-aware IG (dB)",
                     f"{_fmt(diff)} ({ms(learned['psnr'])} vs {ms(base['psnr'])})", "≥ 3",
                     met(diff >= 3)])  # fmt: skip
    budgets = ", ".join(f"{k}: {v['epochs']} epoch(s)" for k, v in inv.items())
    return (
        _rows(["target", "measured", "target", "met"], rows)
        + f"\nInverters: {budgets}.\n"
        + _source(data, path)
    )


DEFENSES = "docs/results/defenses/results.json"


def _mean_std(s: dict[str, Any] | None) -> str:
    """A summary statistic {mean, std, n} as 'mean ± std' (just the mean for one seed)."""
    if not s or s.get("mean") is None:
        return "—"
    return f"{s['mean']:.1f}" if s["n"] == 1 else f"{s['mean']:.1f} ± {s['std']:.1f}"


def _spec(spec: str) -> str:
    return f"`{spec}`" if spec != "none" else "none"


def defenses(root: str, arg: str | None) -> str:
    """The defense experiment, one block (`table:defenses:BLOCK`, default lenet): per defense
    setting ε, update cosine, FedAvg accuracy, the mean-image baseline, each attack's PSNR and
    the blind choice (mean ± std over seeds)."""
    data = _load(root, DEFENSES)
    rows_in = data["summary"][arg or "lenet"]
    names = sorted({n for r in rows_in.values() for n in r["variants"]})
    rows = []
    for spec, r in rows_in.items():
        eps = None if r["epsilon"] is None else round(r["epsilon"], 2)
        cos = r["update_cosine"]
        acc = r["accuracy"]
        rows.append([_spec(spec), _fmt(eps, 2), _fmt(cos["mean"], 3) if cos["n"] else "—",
                     _fmt(acc["mean"], 3) if acc["n"] else "—", _mean_std(r["baseline"]),
                     *[_mean_std(r["variants"].get(n)) for n in names],
                     _mean_std(r["best"])])  # fmt: skip
    header = ["defense", "ε (δ 1e-5)", "update cosine", "FedAvg accuracy", "mean image",
              *names, "blind choice"]  # fmt: skip
    return _rows(header, rows) + _source(data, DEFENSES)


def defenses_aware(root: str, arg: str | None) -> str:
    """Defense-aware against plain on the same observations (`table:defenses-aware:BLOCK`):
    mean ± std of each and of the per-seed gain."""
    data = _load(root, DEFENSES)
    rows = []
    for spec, r in data["summary"][arg or "lenet"].items():
        runs = r["variant_runs"]
        for name in sorted(runs):
            plain = name.removesuffix("+aware")
            if not name.endswith("+aware") or plain not in runs:
                continue
            gain = [runs[name][s] - runs[plain][s] for s in runs[name] if s in runs[plain]]
            std = statistics.stdev(gain) if len(gain) > 1 else 0.0
            g = {"mean": statistics.mean(gain), "std": std, "n": len(gain)} if gain else None
            rows.append([_spec(spec), f"`{plain}`", _mean_std(r["variants"][plain]),
                         _mean_std(r["variants"][name]), _mean_std(g),
                         f"{sum(x > 0 for x in gain)}/{len(gain)}"])  # fmt: skip
    header = ["defense", "attack", "plain PSNR", "defense-aware PSNR", "gain (dB)",
              "seeds with a gain"]  # fmt: skip
    return _rows(header, rows) + _source(data, DEFENSES)


def audit(root: str, arg: str | None) -> str:
    """One `gradinv audit` report.json: per step its result and CPU seconds, then the totals."""
    path = arg or "docs/results/audit.json"
    data = _load(root, path)
    rows = []
    for st in data["steps"]:
        m = st.get("metrics") or {}
        if st["status"] != "ok":
            result = f"{st['status']}: {st.get('reason') or ''}".strip()
        elif st["kind"] == "round":
            result = f"update norm {_fmt(m.get('update_norm'), 2)}"
        elif st["kind"] == "labels":
            result = (f"count accuracy {_fmt(m['count_accuracy'], 2)} (recovered "
                      f"{m['labels_recovered']}, true {m['labels_true']})")  # fmt: skip
        elif st["kind"] == "batch_size":
            shown = m["estimate"] if m["estimate"] is not None else f"at least {m['at_least']}"
            result = f"{shown} (true {m['true']})"
        elif "psnr" in m:
            result = f"{_fmt(m['psnr'])} dB, SSIM {_fmt(m['ssim'], 3)}"
            if (m.get("info") or {}).get("chosen"):
                result += f", chose {m['info']['chosen']}"
            if m.get("label_accuracy") is not None:
                result += f", labels {_fmt(m['label_accuracy'], 2)}"
        else:
            result = "ok"
        rows.append([f"`{st['id']}`", result.replace("|", "/"), _fmt(st.get("cpu_seconds"), 1)])
    privacy = "; ".join(f"{k}: ε = {_fmt(v.get('epsilon'), 2)} at δ = {v.get('delta')}"
                        for k, v in (data.get("privacy") or {}).items() if v)  # fmt: skip
    total = (f"\nTotal: {_fmt(data['cpu_seconds'], 0)} s of CPU, {_fmt(data['seconds'], 0)} s wall "
             f"(load average {_fmt(data.get('load_average'), 1)}, "
             f"{data['environment']['threads']} thread(s)){'; ' + privacy if privacy else ''}.\n")  # fmt: skip
    command = data.get("settings", {}).get("command", "?")
    return (_rows(["step", "result", "CPU s"], rows) + total
            + f"\n_From `{path}`, written by `{command}`._\n")  # fmt: skip


def aux_distribution(root: str, arg: str | None) -> str:
    """Per set and attack (all batches pooled): PSNR/SSIM mean ± std over images and the paired
    PSNR difference to pixel IG with its 95 % interval. ARG: the results.json, optionally
    followed by `#CASE` (b1, b4-unique, b4-same) for one batch composition instead of all."""
    path, _, case = (arg or "docs/results/aux-distribution/results.json").partition("#")
    data = _load(root, path)
    source = data["rows"] if case else data["pooled"]
    rows = []
    for r in source:
        if case and r["case"] != case:
            continue
        delta = (
            "—"
            if r["attack"] == "ig"
            else (f"{r['delta_ig']:+.2f} [{r['delta_ig_low']:+.2f}, {r['delta_ig_high']:+.2f}]")
        )
        rows.append([r["set"], f"`{r['attack']}`", r["n"],
                     f"{_fmt(r['psnr'], 2)} ± {_fmt(r['psnr_std'], 2)}",
                     f"{_fmt(r['ssim'], 3)} ± {_fmt(r['ssim_std'], 3)}", delta])  # fmt: skip
    header = ["private set", "attack", "images", "PSNR (dB)", "SSIM", "Δ PSNR vs ig [95 % CI]"]
    return _rows(header, rows) + _source(data, path)


RENDERERS: dict[str, Callable[[str, str | None], str]] = {
    "aux-distribution": aux_distribution,
    "defenses": defenses,
    "defenses-aware": defenses_aware,
    "defaults": defaults,
    "iteration-cost": iteration_cost,
    "time-to-psnr": time_to_psnr,
    "claims": claims,
    "batch-size": batch_size,
    "sweep-scaling": sweep_scaling,
    "labels": labels,
    "closed-forms": closed_forms,
    "memory": memory,
    "lbfgs": lbfgs,
    "learned-targets": learned_targets,
    "audit": audit,
}


def render(text: str, root: str) -> str:
    """`text` with every table block regenerated from its results file."""

    def one(match: re.Match) -> str:
        name, arg = match.group(2), match.group(3)
        if name not in RENDERERS:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(RENDERERS)}")
        return match.group(1) + RENDERERS[name](root, arg) + match.group(5)

    return BLOCK.sub(one, text)


def documents(root: str) -> list[str]:
    return [os.path.join(root, "README.md"), *sorted(glob.glob(os.path.join(root, "docs", "*.md")))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate README/docs tables from docs/results")
    parser.add_argument("--root", default=".")
    parser.add_argument("--write", action="store_true", help="rewrite the documents in place")
    args = parser.parse_args(argv)
    stale = []
    for path in documents(args.root):
        with open(path) as fh:
            text = fh.read()
        new = render(text, args.root)
        if new != text:
            stale.append(path)
            if args.write:
                with open(path, "w") as fh:
                    fh.write(new)
    for path in stale:
        print(("rewrote " if args.write else "stale: ") + path)
    return 0 if args.write or not stale else 1


if __name__ == "__main__":
    sys.exit(main())
