"""DLG's L-BFGS settings, measured: history size and line search against PSNR and time (LeNet,
B = 1, known labels, 32×32 photos, seeds 0–4, 30 outer steps). Writes docs/results/lbfgs.json.

    python benchmarks/lbfgs.py
"""

from __future__ import annotations

import json
import statistics

import torch

from gradinv.pipeline import RunConfig, run

SETTINGS = [
    {"history": 100, "line_search": True},
    {"history": 30, "line_search": True},
    {"history": 10, "line_search": True},
    {"history": 100, "line_search": False, "lr": 1.0},
]


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for options in SETTINGS:
        psnr, seconds = [], []
        for seed in range(5):
            config = RunConfig(attack="dlg", model="lenet", labels="known", iterations=30,
                               seed=seed, threads=1, attack_options=dict(options))  # fmt: skip
            m = run(config, progress=False).metrics
            psnr.append(round(m["psnr"], 2))
            seconds.append(round(m["time_s"], 2))
        rows.append({**options, "psnr": psnr, "psnr_median": statistics.median(psnr),
                     "seconds_median": statistics.median(seconds)})  # fmt: skip
        print(rows[-1], flush=True)
    with open("docs/results/lbfgs.json", "w") as fh:
        json.dump({"command": "python benchmarks/lbfgs.py", "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
