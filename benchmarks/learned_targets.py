"""The issue's targets for learned inversion, measured with the default inverter recipe (untrained
LeNet, 28×28 gray, fashion-mnist@train; MLP 1000-1000 on a 4096-feature count sketch, 10 epochs)
on fashion-mnist@test: B = 1 PSNR against the mean image, the time of one reconstruction, hidden
batch sizes B ∈ {1, 2, 4} counted by the network, the analytic rank estimate and both (`auto`),
and sign / 99 % pruning with the inverter trained on defended updates against defense-aware IG.

The B = 1 inverter is the full experiment's (`gradinv experiment learned-inversion`, same cache
entry). The counting and defended inverters use a smaller budget than the full experiment
(`--multi-epochs`, `--defense-epochs`), which this file records. Every choice is blind; PSNR
against the private images is reporting only.

Run: `python benchmarks/learned_targets.py --out docs/results/learned_targets.json`
(add `--train-only` to fill the inverter cache first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace

import torch

from gradinv.experiments.learned_inversion import (
    cells,
    deployment,
    full_settings,
    recipes,
    run_cells,
)
from gradinv.learned import cached_inverter, read_record

WANTED = ("learned/b1/fashion-mnist/B1", "count/per-size/random", "ig/fashion-mnist/B1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/results/learned_targets.json")
    p.add_argument("--images", type=int, default=256, help="B = 1 learned images (@test)")
    p.add_argument("--ig-images", type=int, default=8, help="images per IG / defense cell")
    p.add_argument("--count-batches", type=int, default=100, help="hidden batches per B")
    p.add_argument("--ig-iterations", type=int, default=1000)
    p.add_argument("--multi-epochs", type=int, default=2, help="epochs of the B = 1,2,4 inverter")
    p.add_argument("--defense-epochs", type=int, default=1, help="epochs of each defended one")
    p.add_argument("--defenses", nargs="*", default=["sign", "prune:ratio=0.99"])
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--ig-only", action="store_true", help="run the IG cells only (no inverter)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    s = replace(full_settings(), images=args.ig_images, count_batches=args.count_batches,
                ig_iterations=args.ig_iterations, multi_epochs=args.multi_epochs,
                defense_epochs=args.defense_epochs, defenses=tuple(args.defenses))  # fmt: skip
    r = recipes(s, deployment())
    inverters = {}
    names = () if args.ig_only else ("per-size", *s.defenses, "b1")
    for name in names:  # b1 last: it may be training elsewhere
        start = time.perf_counter()
        directory = cached_inverter(**r[name], progress=True)
        rec = read_record(directory)
        t = rec["training"]
        inverters[name] = {"epochs": t["epochs"], "train_images": rec["data"]["train_images"],
                           "seconds": t["seconds"], "cpu_seconds": t["cpu_seconds"],
                           "threads": t["threads"], "held_out": t["losses"][-1],
                           "architecture": rec["architecture"],
                           "ready_s": round(time.perf_counter() - start, 1)}  # fmt: skip
        print(f"inverter {name}: {inverters[name]}", flush=True)
    if args.train_only:
        return 0
    wanted = set(WANTED) | {f"{k}/{d}/fashion-mnist/B1" for d in s.defenses for k in
                            ("learned", "ig")}  # fmt: skip
    configs = [c for c in cells(s) if c["id"] in wanted]
    if args.ig_only:
        configs = [c for c in configs if c["kind"] == "ig"]
    for c in configs:
        if c["id"] == WANTED[0]:
            c["images"] = args.images
    start = time.perf_counter()
    out_dir = "runs/learned_targets"  # the cells (resumable), not committed
    results, _ = run_cells(configs, out_dir, resume=True, log=print)  # finished cells are kept
    if args.ig_only:
        return 0
    command = "python benchmarks/learned_targets.py " + " ".join(argv or sys.argv[1:])
    payload = {
        "command": command.strip(),
        "settings": vars(args),
        "deployment": deployment(),
        "inverters": inverters,
        "cells": {cid: results[cid] for cid in sorted(results)},
        "seconds": round(time.perf_counter() - start, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        "1 thread, 2 shared cores",
    }
    for m in payload["cells"].values():
        m.pop("psnr_per_image", None)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(payload, fh, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
