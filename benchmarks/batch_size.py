"""What the update reveals about a hidden batch size: `estimate_batch_size` for each built-in
model and B (random labels, seed 0). Writes docs/results/batch_size.json (docs/labels.md table).

    python benchmarks/batch_size.py
"""

from __future__ import annotations

import json

import torch

from gradinv.labels import estimate_batch_size
from gradinv.pipeline import RunConfig, prepare


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for model in ("lenet", "mlp4", "convnet", "resnet18"):
        for b in (1, 2, 4, 8, 16, 32, 64):
            config = RunConfig(model=model, batch_size=b, composition="random", labels="auto",
                               share_batch_size=False, seed=0)  # fmt: skip
            obs, _, _ = prepare(config, progress=False)
            e = estimate_batch_size(obs)
            rows.append({"model": model, "batch_size": b, "estimate": e.estimate,
                         "at_least": e.at_least, "confidence": e.confidence, "layer": e.layer,
                         "exact_up_to": e.exact_up_to})  # fmt: skip
            print(rows[-1], flush=True)
    with open("docs/results/batch_size.json", "w") as fh:
        json.dump({"command": "python benchmarks/batch_size.py", "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
