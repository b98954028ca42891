"""Time of each label strategy (and of the batch-size estimate) at B=64 on CPU.

    .venv/bin/python benchmarks/labels_speed.py [--model lenet] [--repeats 20]

Prints a markdown table: median milliseconds per call, after one warm-up call."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradinv.data import load_dataset, sample_batch
from gradinv.fl import observe
from gradinv.labels import STRATEGIES, estimate_batch_size, recover_labels
from gradinv.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    data = load_dataset("sample")
    images, labels = sample_batch(data, args.batch_size, "random", 0)
    torch.manual_seed(0)
    model = build_model(args.model, tuple(images.shape[1:]), data.num_classes)
    obs = observe(model, images, labels)
    print(f"model {args.model}, B={args.batch_size}, {torch.get_num_threads()} threads")
    print("| strategy | median ms |\n|---|---|")
    jobs = {s: (lambda s=s: recover_labels(obs, s, args.batch_size)) for s in STRATEGIES.names()}
    jobs["batch-size estimate"] = lambda: estimate_batch_size(obs)
    for name, job in jobs.items():
        try:
            job()
        except Exception as exc:  # idlg/yin do not apply at B=64
            print(f"| {name} | n/a ({str(exc).split(';')[0]}) |")
            continue
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            job()
            times.append(1000 * (time.perf_counter() - start))
        print(f"| {name} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
