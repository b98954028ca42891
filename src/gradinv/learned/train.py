"""Train an inverter (gradient → images) for one fixed shared model on a `@train` split,
resumably: a rerun of an interrupted run ends with the same weights, bit for bit, as an
uninterrupted one (same seed, same thread count). Everything random is drawn from the seed and
the position in the run — data order from (seed, epoch, B), defense randomness from (seed, epoch,
step) — so a checkpoint holds only weights, Adam's state and counters."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import load_dataset, parse_split
from ..defenses import Defense, parse_defense
from ..errors import GradinvError
from ..generative.checkpoint import Progress, load_checkpoint, remove_checkpoint, save_checkpoint
from ..generative.runtime import deferred_interrupt, torch_threads
from ..generative.train import training_images
from ..models import build_model
from ..options import build, option
from .matching import assignment, matched_mse
from .network import HEADS, Inverter
from .store import FORMAT, VERSION, prepare_out, save_inverter
from .updates import UpdateMaker, fingerprint

VAL_SEED = 0  # the held-out validation images never depend on the training seed
STATS_SEED = 1  # nor do the updates that set the feature standardisation


@dataclass
class InverterOptions:
    """Hyper-parameters of inverter training (besides model, data, batch sizes, defenses,
    epochs and seed)."""

    hidden: tuple = option((1000, 1000), "widths of the MLP's hidden layers")
    sketch: int = option(4096, "hashed features D (count sketch); 0: no hashing", low=0)
    sketch_seed: int = option(0, "seed of the hashing (bucket and sign of every entry)", low=0)
    head: str = option("per-size", "per-size: one image head per B + a count head; set: K slots "
                       "with present scores, Hungarian-matched", choices=HEADS)  # fmt: skip
    lr: float = option(1e-3, "Adam learning rate (cosine decay to 0)", low=0, low_open=True)
    batch: int = option(128, "updates per training step", low=1)
    count_weight: float = option(0.1, "weight of the count (or present-slot) loss", low=0)
    max_images: int = option(0, "train on the first N images of a fixed shuffle (0: all)", low=0)
    val_images: int = option(
        1000, "training-split images held out for the per-epoch validation (never trained on)",
        low=0,
    )  # fmt: skip
    stats_updates: int = option(2048, "updates that set the feature standardisation", low=2)
    threads: int = option(1, "torch threads while training (0: torch's default)", low=0)


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
                 opts: InverterOptions, seed: int, epochs: int) -> None:  # fmt: skip
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
        # every B contributes its N images per epoch: weight an example by its images, and its
        # count term alike, so the count classes are balanced over an epoch
        images_loss = mse.mean()
        total = images_loss + self.opts.count_weight * count
        parts = {"images": float(images_loss.detach()), "count": float(count.detach())}
        return total * b / max(sizes), parts

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


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GradinvError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _defenses(defenses: Sequence[str | Defense]) -> list[Defense]:
    return [parse_defense(d) if isinstance(d, str) else d for d in defenses]


def train_inverter(
    model: str = "lenet",
    data: str = "fashion-mnist@train",
    channels: int = 1,
    image_size: int = 28,
    batch_sizes: Sequence[int] = (1,),
    defenses: Sequence[str | Defense] = (),
    epochs: int = 10,
    seed: int = 0,
    out: str = "inverter",
    model_seed: int = 0,
    model_options: dict[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    **options: Any,
) -> str:
    """Train an inverter for the model `build_model(model, …)` initialised with
    `torch.manual_seed(model_seed)` (exactly as the pipeline builds it), on `data` (a `@train`
    split or a whole dataset; `@test` is refused), and write inverter.safetensors and
    inverter.json into `out`; returns `out`.

    The clients normalise with `mean`/`std` (default: the data's channel statistics, as the
    pipeline computes them) and apply `defenses` (specs such as "prune:ratio=0.99") to their
    update; the inverter learns to invert exactly those updates, for every B in `batch_sizes`.
    `options`: InverterOptions (hidden, sketch, head, lr, batch, ...). An interrupted run (Ctrl-C,
    or killed) leaves a checkpoint in `out`; the same call resumes it.
    """
    _check_int("epochs", epochs, 1)
    _check_int("seed", seed, 0)
    _check_int("model seed", model_seed, 0)
    sizes = sorted({_check_int("batch size", b, 1) for b in batch_sizes})
    if not sizes:
        raise GradinvError("give at least one batch size")
    opts = build(InverterOptions, "train-inverter", dict(options))
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in opts.hidden):
        raise GradinvError(f"hidden widths must be integers >= 1, got {opts.hidden}")
    if parse_split(data)[1] == "test":
        raise GradinvError(
            f"refusing to train an inverter on {data}: use the @train split, so the attacked "
            "(@test) images stay unseen"
        )
    defense_objects = _defenses(defenses)
    dataset = load_dataset(data, channels)
    shape = (dataset.channels, image_size, image_size)
    torch.manual_seed(model_seed)  # the model exactly as the pipeline builds it
    shared = build_model(model, shape, dataset.num_classes, **dict(model_options or {}))
    if mean is None or std is None:
        stats = dataset.channel_stats(image_size)
        mean, std = mean or stats[0], std or stats[1]
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    maker = UpdateMaker(shared, mean, std, defense_objects)
    from ..fl import check_normalization

    check_normalization(mean, std)
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise GradinvError(f"mean/std need {shape[0]} channel values, got {len(mean)}/{len(std)}")
    prepare_out(out, overwrite)
    loaded = time.perf_counter()
    images = training_images(dataset, image_size, 0)
    labels = torch.as_tensor(dataset.labels)
    load_seconds = time.perf_counter() - loaded
    train, val = split_images(len(images), opts.val_images, opts.max_images)
    if len(train) < max(sizes):
        raise GradinvError(f"{len(train)} training images cannot form a batch of {max(sizes)}")
    model_record = {
        "spec": {"name": model, "options": dict(model_options or {})},
        "seed": model_seed,
        "parameters_sha256": fingerprint(maker.params),
        "parameter_names": maker.names,
        "parameters": maker.size,
        "input_shape": list(shape),
        "num_classes": dataset.num_classes,
    }
    recipe = {
        "version": VERSION,
        "model": model_record,
        "data": dataset.spec,
        "images": len(images),
        "mean": mean,
        "std": std,
        "batch_sizes": sizes,
        "defenses": [d.to_dict() for d in defense_objects],
        "epochs": epochs,
        "seed": seed,
        **{k: v for k, v in asdict(opts).items() if k != "threads"},
    }
    with torch_threads(opts.threads) as threads:
        torch.manual_seed(seed)  # the inverter's initial weights
        net = Inverter(maker.size, shape, sizes, opts.hidden, opts.sketch, opts.sketch_seed,
                       opts.head)  # fmt: skip
        trainer = Trainer(maker, net, images, labels, train, val, opts, seed, epochs)
        nets, optimizers = {"net": net}, {"net": trainer.opt}
        state = load_checkpoint(out, recipe, nets, optimizers, trainer.noise)
        if state is None:
            trainer.set_statistics()
        else:
            trainer.state = state
        state = trainer.state
        if state.epoch > epochs or (state.epoch == epochs and state.step):
            raise GradinvError(f"{out} holds a checkpoint past epoch {epochs}; pass --overwrite")
        state.sessions += 1
        bar = tqdm(total=epochs * trainer.steps, initial=state.epoch * trainer.steps + state.step,
                   desc="train-inverter", disable=not progress, dynamic_ncols=True)  # fmt: skip
        with deferred_interrupt() as flag, bar:
            while state.epoch < epochs:
                trainer.run_epoch(out, recipe, flag, bar)
    record = {
        "architecture": {**_architecture(net, opts)},
        "model": model_record,
        "protocol": maker.protocol.to_dict(),
        "normalization": {"mean": mean, "std": std},
        "defenses": [d.to_dict() for d in defense_objects],
        "data": {
            "spec": dataset.spec,
            "split": dataset.split,
            "channels": dataset.channels,
            "image_size": image_size,
            "images": len(images),
            "train_images": len(train),
            "val_images": len(val),
            "max_images": opts.max_images,
        },
        "training": {
            "seed": seed,
            "epochs": epochs,
            "steps": epochs * trainer.steps,
            "batch": opts.batch,
            "lr": opts.lr,
            "count_weight": opts.count_weight,
            "stats_updates": opts.stats_updates,
            "losses": state.losses,
            "seconds": round(state.seconds, 2),
            "cpu_seconds": round(state.cpu_seconds, 2),
            "load_seconds": round(load_seconds, 2),
            "sessions": state.sessions,
            "threads": threads,
            "torch": torch.__version__,
        },
    }
    save_inverter(net, out, record)
    remove_checkpoint(out)
    return out


def _architecture(net: Inverter, opts: InverterOptions) -> dict[str, Any]:
    from .store import architecture

    return architecture(net, list(opts.hidden))


__all__ = ["FORMAT", "InverterOptions", "epoch_plan", "split_images", "train_inverter"]
