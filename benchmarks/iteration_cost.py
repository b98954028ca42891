"""Cost of one gradient-matching iteration relative to one plain training step.

An attack iteration computes the dummy batch's parameter gradient with create_graph=True, the
gradient distance, and differentiates that w.r.t. the images (a double backward), so its physical
floor is about 3x a training step (forward + backward). Run: `python benchmarks/iteration_cost.py`.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from gradinv.attacks.distances import cosine
from gradinv.attacks.optimization import Matcher
from gradinv.fl import observe
from gradinv.models import build_model


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(model_name: str, batch: int, size: int = 32, repeats: int = 5) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(model_name, (3, size, size), 10)
    x = torch.rand(batch, 3, size, size)
    y = torch.arange(batch) % 10
    obs = observe(model, x, y, share_labels=True)
    params = list(model.parameters())

    def train_step() -> None:
        loss = F.cross_entropy(model(x), y)
        torch.autograd.grad(loss, params)

    matcher = Matcher(obs)
    dummy = torch.randn_like(x, requires_grad=True)

    def attack_step() -> None:
        loss = cosine(matcher.update(dummy, y), matcher.target)
        torch.autograd.grad(loss, dummy)

    model.train()
    return _time(train_step, repeats), _time(attack_step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads, 32x32"
    )
    print("| model | batch | train step (ms) | attack iteration (ms) | ratio |")
    print("|---|---|---|---|---|")
    for name in ("lenet", "convnet", "resnet18"):
        for batch in (1, 8):
            train, attack = measure(name, batch, repeats=args.repeats)
            print(
                f"| {name} | {batch} | {train * 1e3:.1f} | {attack * 1e3:.1f} | {attack / train:.1f}x |"
            )


if __name__ == "__main__":
    main()
