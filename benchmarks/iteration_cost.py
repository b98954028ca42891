"""Cost of one attack iteration relative to one plain training step, and of batched restarts.

A training step is forward + backward + SGD step. An IG iteration is the whole step of the attack
as it runs (the dummy batch's gradient with a graph, cosine distance, TV, the double backward,
signed Adam, projection), measured from two runs of the public API with different iteration
counts, so set-up costs cancel. Its physical floor is about 3x a training step (one double
backward). Run: `python benchmarks/iteration_cost.py [--out docs/results/iteration_cost.json]`;
it uses only the public API, so the same script measures an older checkout (PYTHONPATH=...).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F
from results_file import merge_section  # benchmarks/ is on the path of its scripts

from gradinv import build_model, make_attack, observe


def _per_call(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _setup(model_name: str, batch: int, size: int, width: int | None):
    torch.manual_seed(0)
    options = {"width": width} if width else {}
    model = build_model(model_name, (3, size, size), 10, **options)
    x = torch.rand(batch, 3, size, size)
    y = torch.arange(batch) % 10
    return model, x, y


def train_step_ms(model_name: str, batch: int, size: int, width: int | None, repeats: int) -> float:
    model, x, y = _setup(model_name, batch, size, width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return 1e3 * _per_call(step, repeats)


def ig_iteration_ms(
    model_name: str, batch: int, size: int, width: int | None, short: int, long: int,
    restarts: int = 1,
) -> float:  # fmt: skip
    model, x, y = _setup(model_name, batch, size, width)
    obs = observe(model, x, y, share_labels=True)

    def run(iterations: int) -> float:
        attack = make_attack("ig", iterations=iterations, restarts=restarts, progress=False)
        start = time.perf_counter()
        attack.reconstruct(obs)
        return time.perf_counter() - start

    run(short)  # warm-up
    t_short, t_long = min(run(short) for _ in range(2)), min(run(long) for _ in range(2))
    return 1e3 * (t_long - t_short) / (long - short)


CASES = [("lenet", 1, None), ("lenet", 8, None), ("convnet", 1, None), ("convnet", 8, None),
         ("resnet18", 1, None), ("resnet18", 8, None)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--label", default="after", help="a name for this checkout (before/after)")
    parser.add_argument("--out", default=None, help="merge the rows into this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"torch {torch.__version__}, {platform.machine()}, {args.threads} thread(s), 32x32")
    print("| model | batch | train step (ms) | IG iteration (ms) | ratio | 4 restarts / 1 |")
    print("|---|---|---|---|---|---|")
    for name, batch, width in CASES:
        heavy = name == "resnet18"
        short, long = (3, 13) if heavy else (10, 110)
        train = train_step_ms(name, batch, 32, width, 5 if heavy else args.repeats)
        attack = ig_iteration_ms(name, batch, 32, width, short, long)
        batched = ig_iteration_ms(name, batch, 32, width, short, long, restarts=4) / attack
        row = {"model": name, "batch": batch, "train_step_ms": round(train, 2),
               "iteration_ms": round(attack, 2), "ratio": round(attack / train, 2),
               "restarts4_over_1": round(batched, 2)}  # fmt: skip
        rows.append(row)
        print(f"| {name} | {batch} | {train:.1f} | {attack:.1f} | {attack / train:.2f}x | "
              f"{batched:.2f}x |", flush=True)  # fmt: skip
    if args.out:
        merge_section(args.out, "python benchmarks/iteration_cost.py --label LABEL --out FILE",
                      args.label, {"threads": args.threads, "torch": torch.__version__,
                                   "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
