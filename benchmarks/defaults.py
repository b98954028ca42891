"""What a user gets from the defaults: `gradinv attack --attack A --model M --batch-size 1
--labels known --seed S` on the built-in photos (32×32), for seeds 0..9 — median, 10th
percentile and minimum PSNR, and seconds. Writes docs/results/defaults.json (the README's table).

    python benchmarks/defaults.py [--attacks auto,dlg,ig] [--models lenet,mlp4,convnet] [--seeds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from gradinv.pipeline import RunConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default="auto,dlg,ig")
    parser.add_argument("--models", default="lenet,mlp4,convnet")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="docs/results/defaults.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        with open(args.out) as fh:
            done = {(r["attack"], r["model"]): r for r in json.load(fh)["rows"]}
    except (FileNotFoundError, KeyError, ValueError):
        done = {}
    rows = []
    for model in args.models.split(","):
        for attack in args.attacks.split(","):
            if (attack, model) in done and len(done[(attack, model)]["psnr"]) == args.seeds:
                rows.append(done[(attack, model)])  # resumable: finished rows are kept
                continue
            psnr, seconds, chosen = [], [], []
            for seed in range(args.seeds):
                config = RunConfig(attack=attack, model=model, batch_size=1, labels="known",
                                   seed=seed, threads=args.threads)  # fmt: skip
                result = run(config, progress=False)
                psnr.append(round(result.metrics["psnr"], 2))
                seconds.append(round(result.metrics["time_s"], 2))
                chosen.append(result.metrics["info"].get("chosen"))
                print(f"{attack} {model} seed {seed}: {psnr[-1]:.2f} dB, {seconds[-1]:.1f} s "
                      f"{chosen[-1] or ''}", flush=True)  # fmt: skip
            row = {
                "attack": attack, "model": model, "psnr": psnr, "seconds": seconds,
                "median": float(np.median(psnr)), "p10": float(np.percentile(psnr, 10)),
                "min": float(min(psnr)), "mean": float(np.mean(psnr)), "std": float(np.std(psnr)),
                "at_least_25": int(sum(p >= 25 for p in psnr)),
                "seconds_median": float(np.median(seconds)),
            }  # fmt: skip
            if any(chosen):
                row["chosen"] = chosen
            rows.append(row)
            os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
            with open(args.out, "w") as fh:
                json.dump({"command": " ".join(["python benchmarks/defaults.py", *sys.argv[1:]]), "threads": args.threads,
                           "data": "sample, 32x32, B=1, labels known, model_seed 0",
                           "rows": rows}, fh, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
