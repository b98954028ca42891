"""Seconds until an attack's reconstruction reaches 20 dB and 30 dB, and its final PSNR.

Each run keeps a snapshot of its (kept) reconstruction at every iteration; the wall time of
iteration k is set-up + (k + 1) · (time per iteration), both measured from the run itself.
Median over 5 seeds. Uses only the public API, so the same script measures an older checkout:
    PYTHONPATH=/path/to/old/src python benchmarks/time_to_psnr.py --label before --out F
    python benchmarks/time_to_psnr.py --label after --out F
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from results_file import merge_section  # benchmarks/ is on the path of its scripts

from gradinv import build_model, evaluate, load_dataset, make_attack, observe, sample_batch

CASES = {
    "ig-lenet": ("ig", "lenet", {}, 2000),
    "dlg-lenet": ("dlg", "lenet", {}, 100),
    "ig-resnet18": ("ig", "resnet18", {}, 300),
}
THRESHOLDS = (20.0, 30.0)


def one_run(case: str, seed: int) -> dict:
    attack_name, model_name, options, iterations = CASES[case]
    data = load_dataset("sample")
    images, labels = sample_batch(data, 1, "unique", seed=seed, image_size=32)
    torch.manual_seed(0)
    model = build_model(model_name, (3, 32, 32), data.num_classes, **options)
    mean, std = data.channel_stats(32)
    obs = observe(model, images, labels, mean=mean, std=std, share_labels=True)
    attack = make_attack(attack_name, iterations=iterations, num_snapshots=iterations, seed=seed,
                         progress=False)  # fmt: skip
    start = time.perf_counter()
    short = make_attack(attack_name, iterations=1, seed=seed, progress=False)
    short.reconstruct(obs)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    rec = attack.reconstruct(obs)
    total = time.perf_counter() - start
    per_iteration = max(total - setup, 0.0) / iterations
    reached = {}
    for threshold in THRESHOLDS:
        first = next(
            (it for it, snap in rec.snapshots if evaluate(snap, images)["psnr"] >= threshold), None
        )
        reached[str(threshold)] = None if first is None else setup + (first + 1) * per_iteration
    return {"seed": seed, "final_psnr": evaluate(rec.images, images)["psnr"], "seconds": total,
            "to_psnr": reached}  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    out = {"runs": runs, "final_psnr_median": statistics.median(r["final_psnr"] for r in runs),
           "seconds_median": statistics.median(r["seconds"] for r in runs)}  # fmt: skip
    for threshold in THRESHOLDS:
        times = [r["to_psnr"][str(threshold)] for r in runs]
        reached = [t for t in times if t is not None]
        # a run that never reaches the threshold counts as infinitely slow in the median
        ordered = sorted(reached) + [float("inf")] * (len(times) - len(reached))
        median = ordered[len(ordered) // 2]
        out[f"to_{int(threshold)}db_median_s"] = None if median == float("inf") else median
        out[f"reached_{int(threshold)}db"] = f"{len(reached)}/{len(times)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for case in args.cases.split(","):
        runs = [one_run(case, seed) for seed in range(args.seeds)]
        results[case] = summarise(runs)
        r = results[case]
        print(f"{args.label} {case}: final {r['final_psnr_median']:.1f} dB, 20 dB after "
              f"{r['to_20db_median_s']} s ({r['reached_20db']}), 30 dB after "
              f"{r['to_30db_median_s']} s ({r['reached_30db']})", flush=True)  # fmt: skip
    if args.out:
        merge_section(args.out, "python benchmarks/time_to_psnr.py --label LABEL --out FILE",
                      args.label, {**results, "threads": args.threads})  # fmt: skip


if __name__ == "__main__":
    main()
