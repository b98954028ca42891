"""Train a generator on a dataset's `@train` split (DCGAN recipe: Adam 2e-4, betas (0.5, 0.999),
non-saturating BCE), resumably: a rerun of an interrupted run ends with the same weights, bit for
bit, as an uninterrupted one (same seed, same thread count)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import ImageDataset, load_dataset, parse_split
from ..errors import GradinvError, Interrupted
from ..options import build, option
from .checkpoint import Progress, load_checkpoint, remove_checkpoint, save_checkpoint
from .grid import save_grid
from .kinds import KINDS, build_discriminator, build_generator, generator_options
from .runtime import deferred_interrupt, torch_threads
from .store import JSON, VERSION, WEIGHTS, save_generator

SAMPLES = "samples.png"
SAMPLES_SEED = 0  # samples.png always shows the same 64 latents


@dataclass
class TrainOptions:
    """Hyper-parameters of generator training (besides data, shape, kind, epochs and seed)."""

    batch_size: int = option(64, "images per step", low=1)
    lr: float = option(2e-4, "Adam learning rate of both networks", low=0, low_open=True)
    beta1: float = option(0.5, "Adam beta1 (DCGAN: 0.5)", low=0, high=1, high_open=True)
    beta2: float = option(0.999, "Adam beta2", low=0, high=1, high_open=True)
    max_images: int = option(0, "train on the first N images of a fixed shuffle (0: all)", low=0)
    threads: int = option(1, "torch threads while training (0: torch's default)", low=0)


def _split_options(kind: str, options: dict[str, Any]) -> tuple[dict[str, Any], TrainOptions]:
    """Generator constructor arguments (e.g. latent_dim, width) apart from training options."""
    arch = set(generator_options(kind)) - {"channels", "image_size"}
    train = {f.name for f in fields(TrainOptions)}
    unknown = sorted(set(options) - arch - train)
    if unknown:
        raise GradinvError(
            f"train-generator has no option {unknown[0]!r}; valid options: "
            f"{', '.join(sorted(arch | train))}"
        )
    rest = {k: v for k, v in options.items() if k in train}
    return {k: v for k, v in options.items() if k in arch}, build(
        TrainOptions, "train-generator", rest
    )


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise GradinvError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def prepare_out(out: str, overwrite: bool) -> None:
    """Refuse to replace a finished generator unless asked; clear our files when asked."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise GradinvError(f"--out {out} exists and is not a directory")
    done = os.path.isfile(os.path.join(out, JSON))
    if done and not overwrite:
        raise GradinvError(
            f"{out} already holds a trained generator; pass --overwrite to retrain it "
            "or choose another --out"
        )
    if overwrite:
        remove_checkpoint(out)
        for name in (JSON, WEIGHTS, SAMPLES):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out, name))
    os.makedirs(out, exist_ok=True)


def training_images(dataset: ImageDataset, image_size: int, max_images: int) -> torch.Tensor:
    """The training images as uint8 (N, C, S, S): a quarter of the memory of floats."""
    idx = np.arange(len(dataset))
    if max_images:
        idx = np.sort(np.random.default_rng(0).permutation(idx)[:max_images])
    chunks = []
    for start in range(0, len(idx), 2048):
        x = dataset.load(idx[start : start + 2048].tolist(), image_size)
        chunks.append((x * 255).round_().to(torch.uint8))
    return torch.cat(chunks)


def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of an epoch depends only on (seed, epoch): nothing to save for it."""
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(state))


def gan_step(
    gen: nn.Module,
    disc: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
) -> tuple[float, float]:
    """One DCGAN step: the discriminator on real vs. detached fakes, then the generator
    (non-saturating loss). Returns (discriminator loss, generator loss)."""
    ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
    fake = gen(z)
    loss_d = F.binary_cross_entropy_with_logits(disc(real), ones)
    loss_d = loss_d + F.binary_cross_entropy_with_logits(disc(fake.detach()), zeros)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    loss_g = F.binary_cross_entropy_with_logits(disc(fake), ones)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item()


@dataclass
class _Session:
    """One training session: the networks, their optimizers, the data and the counters."""

    out: str
    recipe: dict[str, Any]
    images: torch.Tensor
    batch_size: int
    seed: int
    gen: nn.Module
    disc: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator
    state: Progress

    @property
    def steps(self) -> int:
        return len(self.images) // self.batch_size

    def save(self) -> None:
        nets, optimizers = {"G": self.gen, "D": self.disc}, {"G": self.opt_g, "D": self.opt_d}
        save_checkpoint(self.out, self.recipe, self.state, nets, optimizers, self.noise)

    def run_epoch(self, flag: dict[str, bool], bar: tqdm) -> None:
        """Finish the current epoch; on Ctrl-C save mid-epoch and raise Interrupted."""
        state, b = self.state, self.batch_size
        order = _epoch_order(self.seed, state.epoch, len(self.images))
        started, cpu = time.perf_counter(), time.process_time()
        while state.step < self.steps:
            idx = order[state.step * b : (state.step + 1) * b]
            real = self.images[idx].float().div_(127.5).sub_(1.0)
            z = torch.randn(len(idx), self.gen.latent_dim, generator=self.noise)
            loss_d, loss_g = gan_step(self.gen, self.disc, self.opt_g, self.opt_d, real, z)
            state.step += 1
            state.sums["d"] += loss_d
            state.sums["g"] += loss_g
            bar.update(1)
            bar.set_postfix(epoch=state.epoch + 1, d=f"{loss_d:.3f}", g=f"{loss_g:.3f}")
            if flag["stop"]:
                break
        state.seconds += time.perf_counter() - started
        state.cpu_seconds += time.process_time() - cpu
        if flag["stop"]:
            self.save()
            raise Interrupted(
                f"checkpoint saved in {self.out} (epoch {state.epoch + 1}, step "
                f"{state.step}/{self.steps}); rerun the same command to resume"
            )
        mean = {k: round(v / self.steps, 5) for k, v in state.sums.items()}
        state.losses.append({"epoch": state.epoch + 1, **mean})
        state.epoch, state.step, state.sums = state.epoch + 1, 0, {"d": 0.0, "g": 0.0}
        self.save()


def train_generator(
    data_spec: str,
    channels: int,
    image_size: int,
    kind: str = "dcgan",
    epochs: int = 5,
    seed: int = 0,
    out: str = "generator",
    progress: bool = True,
    overwrite: bool = False,
    **options: Any,
) -> str:
    """Train a generator on `data_spec` (a `@train` split or a whole dataset; `@test` is refused),
    write generator.safetensors, generator.json and samples.png into `out`, and return `out`.

    `options`: the kind's architecture arguments (dcgan: latent_dim, width) and TrainOptions
    (batch_size, lr, beta1, beta2, max_images, threads). Ctrl-C saves a checkpoint in `out` and
    raises `gradinv.errors.Interrupted`; a killed run leaves its last epoch's checkpoint. The same
    call resumes either.
    """
    KINDS.get(kind)
    _check_int("epochs", epochs, 1)
    _check_int("seed", seed, 0)
    arch, opts = _split_options(kind, options)
    gen_kwargs = generator_options(kind) | {"channels": channels, "image_size": image_size} | arch
    build_generator(kind, **gen_kwargs)  # shape and arguments checked before any slow work
    if parse_split(data_spec)[1] == "test":
        raise GradinvError(
            f"refusing to train a generator on {data_spec}: use the @train split, so the "
            "attacked (@test) images stay unseen"
        )
    dataset = load_dataset(data_spec, channels)
    prepare_out(out, overwrite)
    loaded = time.perf_counter()
    images = training_images(dataset, image_size, opts.max_images)
    load_seconds = time.perf_counter() - loaded
    steps = len(images) // opts.batch_size
    if steps == 0:
        raise GradinvError(
            f"{dataset.spec} has {len(images)} training images, fewer than the batch size "
            f"{opts.batch_size}; lower --batch-size"
        )
    recipe = {
        "version": VERSION,
        "kind": kind,
        "kwargs": gen_kwargs,
        "data": dataset.spec,
        "images": len(images),
        "seed": seed,
        **{k: v for k, v in asdict(opts).items() if k != "threads"},
    }
    with torch_threads(opts.threads) as threads:
        torch.manual_seed(seed)  # the initial weights
        gen, disc = build_generator(kind, **gen_kwargs), build_discriminator(kind, gen_kwargs)
        betas = (opts.beta1, opts.beta2)
        opt_g = torch.optim.Adam(gen.parameters(), lr=opts.lr, betas=betas)
        opt_d = torch.optim.Adam(disc.parameters(), lr=opts.lr, betas=betas)
        noise = torch.Generator().manual_seed(seed)
        nets, optimizers = {"G": gen, "D": disc}, {"G": opt_g, "D": opt_d}
        state = load_checkpoint(out, recipe, nets, optimizers, noise) or Progress()
        if state.epoch > epochs or (state.epoch == epochs and state.step):
            raise GradinvError(
                f"{out} holds a checkpoint past epoch {epochs}; pass --overwrite or more --epochs"
            )
        state.sessions += 1
        session = _Session(
            out, recipe, images, opts.batch_size, seed, gen, disc, opt_g, opt_d, noise, state
        )
        bar = tqdm(
            total=epochs * steps,
            initial=state.epoch * steps + state.step,
            desc="train-generator",
            disable=not progress,
            dynamic_ncols=True,
        )
        with deferred_interrupt() as flag, bar:
            gen.train(), disc.train()
            while state.epoch < epochs:
                session.run_epoch(flag, bar)
        gen.eval()
        with torch.no_grad():
            z = torch.randn(
                64, gen.latent_dim, generator=torch.Generator().manual_seed(SAMPLES_SEED)
            )
            save_grid(gen(z), os.path.join(out, SAMPLES))
    record = {
        "data": {
            "spec": dataset.spec,
            "split": dataset.split,
            "channels": channels,
            "image_size": image_size,
            "images": len(images),
            "max_images": opts.max_images,
        },
        "training": {
            "seed": seed,
            "epochs": epochs,
            "epochs_done": state.epoch,
            "steps": epochs * steps,
            "batch_size": opts.batch_size,
            "lr": opts.lr,
            "betas": list(betas),
            "losses": state.losses,
            "seconds": round(state.seconds, 2),  # wall clock of the training steps
            "cpu_seconds": round(state.cpu_seconds, 2),  # this process's CPU time for them
            "load_seconds": round(load_seconds, 2),
            "sessions": state.sessions,
            "threads": threads,
            "torch": torch.__version__,
        },
        "samples": {"file": SAMPLES, "seed": SAMPLES_SEED, "count": 64},
    }
    save_generator(gen, out, kind, gen_kwargs, **record)
    remove_checkpoint(out)
    return out
