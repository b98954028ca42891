"""Peak memory (resident set size) of an IG attack on ResNet-18 with B = 8 and of label recovery
at B = 64 on LeNet, each measured in a fresh process (ru_maxrss), minus the process's baseline
after importing gradinv and building the observation. Writes docs/results/memory.json.

    python benchmarks/memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = {
    "ig-resnet18-b8": "ig",
    "labels-lenet-b64": "labels",
}

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from gradinv.pipeline import RunConfig, prepare
from gradinv.attacks import make_attack
from gradinv.labels import recover_labels
kind = sys.argv[1]
if kind == "ig":
    config = RunConfig(model="resnet18", batch_size=8, labels="known")
else:
    config = RunConfig(model="lenet", batch_size=64, composition="random", labels="auto")
obs, images, labels = prepare(config, progress=False)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if kind == "ig":
    make_attack("ig", iterations=5, restarts=1, progress=False).reconstruct(obs)
else:
    recover_labels(obs.without(labels=True), "auto")
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_mb": base / 1024, "peak_mb": peak / 1024,
                  "attack_mb": (peak - base) / 1024, "seconds": seconds}))
"""


def main() -> None:
    rows = []
    for name, kind in CASES.items():
        out = subprocess.run([sys.executable, "-c", CHILD, kind], capture_output=True, text=True,
                             check=True)  # fmt: skip
        row = {"case": name, **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(row, flush=True)
    with open("docs/results/memory.json", "w") as fh:
        json.dump({"command": "python benchmarks/memory.py", "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
