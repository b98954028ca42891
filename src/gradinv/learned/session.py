"""One training session of an inverter: the epoch plan, the fixed input maps, the loss (matched
images + count), the step loop with deferred Ctrl-C and checkpoints, and held-out validation.
Everything random is drawn from the seed and the position in the run — data order from (seed,
epoch, B), defense randomness from (seed, epoch, step) — so a checkpoint holds only weights,
Adam's state and counters, and a resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import GradinvError
from ..generative.checkpoint import Progress, save_checkpoint
from .matching import assignment, matched_mse
from .network import Inverter
from .updates import UpdateMaker

VAL_SEED = 0  # the held-out validation images never depend on the training seed
STATS_SEED = 1  # nor do the updates that set the feature standardisation


def _seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _perm(n: int, *keys: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(_seed(*keys)))


def epoch_plan(
    seed: int, epoch: int, n: int, batch_sizes: Sequence[int], batch: int
) -> list[tuple[int, torch.Tensor]]:
    """The steps of an epoch: (B, image indices (m, B)). Every training image appears once per
    B in groups of B; each step holds up to `batch` groups of one size; steps are shuffled."""
    steps = []
    for b in batch_sizes:
        groups = _perm(n, seed, epoch, b)[: n // b * b].view(-1, b)
        steps += [(b, groups[s : s + batch]) for s in range(0, len(groups), batch)]
    order = _perm(len(steps), seed, epoch)
    return [steps[int(i)] for i in order]


def split_images(n: int, val_images: int, max_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices into the training split: validation is a fixed held-out
    part (validation choices never look at @test), train the rest (capped by max_images)."""
    if val_images >= n:
        raise GradinvError(f"val_images {val_images} leaves no training images out of {n}")
    order = _perm(n, VAL_SEED)
    val, train = order[n - val_images :].sort().values, order[: n - val_images]
    if max_images:
        train = train[:max_images]
    return train.sort().values, val


class Trainer:
    """The networks, data and counters of one training session."""

    def __init__(self, maker: UpdateMaker, net: Inverter, images: torch.Tensor,
                 labels: torch.Tensor, train: torch.Tensor, val: torch.Tensor,
                 opts: Any, seed: int, epochs: int) -> None:  # fmt: skip
        self.maker, self.net, self.images, self.labels = maker, net, images, labels
        self.train, self.val, self.opts, self.seed, self.epochs = train, val, opts, seed, epochs
        self.opt = torch.optim.Adam(net.parameters(), lr=opts.lr)
        self.steps = len(epoch_plan(seed, 0, len(train), net.batch_sizes, opts.batch))
        self.state = Progress(sums={"loss": 0.0, "images": 0.0, "count": 0.0})
        self.noise = torch.Generator()  # unused: save_checkpoint's format carries one

    def updates(self, idx: torch.Tensor, b: int, *keys: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat (defended) updates of the groups `idx` (m, B) and their images (m, B, C, H, W)."""
        flat = idx.reshape(-1)
        x = self.images[flat].float().div_(255)
        seeds = np.random.SeedSequence([int(k) for k in keys]).generate_state(len(idx))
        u = self.maker.updates(x, self.labels[flat], b, [int(s) for s in seeds])
        return u, x.view(len(idx), b, *x.shape[1:])

    def set_statistics(self) -> None:
        """The fixed input maps: per-tensor scale of the entries, per-feature mean and std."""
        sizes, net = self.net.batch_sizes, self.net
        per = max(1, self.opts.stats_updates // len(sizes))
        chunks = []
        for b in sizes:
            n = min(per, len(self.train) // b)
            idx = self.train[_perm(len(self.train), self.seed, STATS_SEED, b)[: n * b]]
            chunks.append(self.updates(idx.view(n, b), b, self.seed, STATS_SEED, b)[0])
        u = torch.cat(chunks)
        scale, start = torch.empty(u.shape[1]), 0
        for shape in self.maker.shapes.values():
            k = int(torch.Size(shape).numel())
            rms = u[:, start : start + k].pow(2).mean().sqrt()
            scale[start : start + k] = 1.0 / rms.clamp_min(1e-30) if rms > 0 else 1.0
            start += k
        net.entry_scale.copy_(scale)
        h = net.sketch(u * scale)
        net.feature_mean.copy_(h.mean(0))
        net.feature_std.copy_(h.std(0).clamp_min(1e-6 * float(h.std(0).max()) + 1e-30))

    def loss(self, b: int, idx: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, dict]:
        u, x = self.updates(idx, b, self.seed, epoch, step)
        out = self.net(self.net.features(u), b)
        sizes = self.net.batch_sizes
        count = torch.zeros(())
        if self.net.head_kind == "set":
            mse, slots = matched_mse(out.images, x)
            present = torch.zeros_like(out.present_logits).scatter_(1, slots, 1.0)
            count = F.binary_cross_entropy_with_logits(out.present_logits, present)
        else:
            mse, _ = matched_mse(out.images, x)
            if out.count_logits is not None:
                target = torch.full((len(idx),), sizes.index(b), dtype=torch.long)
                count = F.cross_entropy(out.count_logits, target)
        # A step's image loss is its mean per-image MSE at weight 1, whatever B (mixing step
        # weights would hand Adam gradients of several scales and slow the small-B steps). B
        # has N/B examples per epoch, so its count term is weighted by B/mean(B): the count
        # classes are balanced over an epoch.
        images_loss = mse.mean()
        balance = b * len(sizes) / sum(sizes)
        total = images_loss + self.opts.count_weight * balance * count
        parts = {"images": float(images_loss.detach()), "count": float(count.detach())}
        return total, parts

    def lr(self, global_step: int) -> float:
        total = self.epochs * self.steps
        return self.opts.lr * 0.5 * (1 + math.cos(math.pi * min(global_step, total) / total))

    def save(self, out: str, recipe: dict) -> None:
        save_checkpoint(out, recipe, self.state, {"net": self.net}, {"net": self.opt}, self.noise)

    def run_epoch(self, out: str, recipe: dict, flag: dict[str, bool], bar: tqdm) -> None:
        """Finish the current epoch; on Ctrl-C save mid-epoch and raise KeyboardInterrupt."""
        state = self.state
        plan = epoch_plan(self.seed, state.epoch, len(self.train), self.net.batch_sizes,
                          self.opts.batch)  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        self.net.train()
        while state.step < len(plan):
            b, groups = plan[state.step]
            for group in self.opt.param_groups:
                group["lr"] = self.lr(state.epoch * self.steps + state.step)
            loss, parts = self.loss(b, self.train[groups], state.epoch, state.step)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            state.step += 1
            state.sums["loss"] += float(loss.detach())
            state.sums["images"] += parts["images"]
            state.sums["count"] += parts["count"]
            bar.update(1)
            bar.set_postfix(epoch=state.epoch + 1, mse=f"{parts['images']:.4f}")
            if flag["stop"]:
                break
        state.seconds += time.perf_counter() - started
        state.cpu_seconds += time.process_time() - cpu
        if flag["stop"]:
            self.save(out, recipe)
            print(
                f"interrupted: checkpoint saved in {out} (epoch {state.epoch + 1}, step "
                f"{state.step}/{len(plan)}); rerun the same command to resume",
                file=sys.stderr,
            )
            raise KeyboardInterrupt
        record = {k: round(v / len(plan), 6) for k, v in state.sums.items()}
        record |= self.validate()
        state.losses.append({"epoch": state.epoch + 1, **record})
        state.epoch, state.step = state.epoch + 1, 0
        state.sums = {k: 0.0 for k in state.sums}
        self.save(out, recipe)

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """PSNR per B (known B, matched) and count accuracy on the held-out training images."""
        if not len(self.val):
            return {}
        self.net.eval()
        psnr, correct = {}, {}
        for b in self.net.batch_sizes:
            n = len(self.val) // b
            if n == 0:
                continue
            u, x = self.updates(self.val[: n * b].view(n, b), b, self.seed, VAL_SEED, b)
            pred = torch.stack([inv.images for inv in self.net.invert(u, b)])
            psnr[str(b)] = round(float(matched_psnr(pred, x).mean()), 3)
            if len(self.net.batch_sizes) > 1:
                counts = [inv.network_batch_size for inv in self.net.invert(u)]
                correct[str(b)] = round(float(np.mean([c == b for c in counts])), 4)
        self.net.train()
        return {"val_psnr": psnr} | ({"val_count_accuracy": correct} if correct else {})


def matched_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (M·B,) of `pred` (M, B, …) against `target` after Hungarian matching."""
    flat_p, flat_x = pred.flatten(2), target.flatten(2)
    slots = assignment(flat_p, flat_x)
    matched = torch.gather(flat_p, 1, slots[..., None].expand(-1, -1, flat_p.shape[2]))
    mse = (matched - flat_x).double().pow(2).mean(2).flatten()
    return 10 * torch.log10(1 / mse.clamp_min(1e-30))
