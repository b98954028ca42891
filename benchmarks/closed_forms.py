"""Closed-form attacks on real 32x32 photo crops: spear's success rate and time against the batch
size B and the first layer's width (composition `same`: every label equal), and the time of the
bias attack and R-GAP.

Run: `python benchmarks/closed_forms.py` (all of it takes several minutes on 2 cores), or e.g.
`python benchmarks/closed_forms.py --batch-sizes 4 8 16 32 --widths 1000 --skip-bias-rgap`.
Success = PSNR >= 60 dB after de-normalising to [0,1]; `certified` = samples the attack
certified (their own gradients are exactly pieces of the update); `cert_min` = the lowest PSNR of a
certified sample when only the certified samples are matched to the batch (Hungarian), and
`cert_wrong` = how many certified samples are under 60 dB (must be 0).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

from gradinv.metrics import psnr
from gradinv.pipeline import RunConfig, run


def certified_psnr(result) -> list[float]:  # noqa: ANN001
    """PSNR of each certified sample against the image it is matched to, matching only the
    certified samples (uncertified blanks must not pull them to another image)."""
    flags = result.metrics["info"].get("certified") or []
    rec = result.reconstruction.images[[i for i, c in enumerate(flags) if c]]
    if not len(rec):
        return []
    cost = torch.cdist(rec.double().flatten(1), result.images.double().flatten(1)).pow(2)
    rows, cols = linear_sum_assignment(cost.numpy())
    return [float(v) for v in psnr(rec[rows], result.images[cols])]


def _one(config: RunConfig) -> dict:
    start = time.perf_counter()
    result = run(config, progress=False)
    psnr = np.array(result.metrics["psnr_per_image"])
    info = result.metrics["info"]
    cert = certified_psnr(result)
    return {
        "attack": config.attack,
        "model": config.model,
        "width": config.model_options.get("width"),
        "batch_size": config.batch_size,
        "image_size": config.image_size,
        "dtype": config.dtype,
        "success_rate": float((psnr >= 60).mean()),
        "psnr_min": float(psnr.min()),
        "psnr_median": float(np.median(psnr)),
        "certified": info.get("certified_count"),
        "cert_min": round(min(cert), 1) if cert else None,
        "cert_wrong": sum(p < 60 for p in cert),
        "attack_s": result.metrics["time_s"],
        "total_s": round(time.perf_counter() - start, 2),
        "tries": info.get("tries"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--widths", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-bias-rgap", action="store_true")
    parser.add_argument("--out", default=None, help="save the rows as JSON")
    args = parser.parse_args()
    # One thread (torch and numpy's BLAS): spear's small QRs and least squares gain nothing from
    # more, and on a busy machine two BLAS threads make them ~50x slower.
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}"
    )
    rows = []
    for width in args.widths:
        for b in args.batch_sizes:
            config = RunConfig(attack="spear", model="mlp4", batch_size=b, composition="same",
                               model_options={"width": width}, dtype=args.dtype, seed=args.seed,
                               image_size=args.image_size)  # fmt: skip
            rows.append(_one(config))
            print(json.dumps(rows[-1]), flush=True)
    if not args.skip_bias_rgap:
        for dtype in ("float32", "float64"):
            rows.append(_one(RunConfig(attack="bias", model="mlp4", dtype=dtype, seed=args.seed)))
            print(json.dumps(rows[-1]), flush=True)
        for size in (16, 32):
            rows.append(_one(RunConfig(attack="rgap", model="cnn6", image_size=size,
                                       labels="joint", seed=args.seed)))  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    print("\n| attack | model | width | B | success (>=60 dB) | min PSNR | certified | "
          "certified min PSNR | certified < 60 dB | attack s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['attack']} | {r['model']} | {r['width'] or '-'} | {r['batch_size']} | "
              f"{r['success_rate']:.0%} | {r['psnr_min']:.1f} | {r['certified']} | "
              f"{r['cert_min']} | {r['cert_wrong']} | {r['attack_s']:.1f} |")  # fmt: skip
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"command": "python benchmarks/closed_forms.py --out "
                       "docs/results/closed_forms.json", "threads": args.threads,
                       "rows": rows}, fh, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
