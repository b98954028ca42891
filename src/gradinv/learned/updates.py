"""The inverter's training data: batch updates formed exactly as the client forms them, from
per-sample gradients through the fixed shared model (torch.func: vmap over grad, one call per
chunk). FedSGD's update for a batch is the mean of its per-sample gradients (the client's mean
loss is separable when the model has no BatchNorm), and defenses post-process it with their own
`apply` on a `ClientRound` with a seeded generator, as `gradinv.fl.defended_update` does."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.func import functional_call, grad, vmap

from ..defenses import Defense
from ..errors import GradinvError
from ..fl import ClientRound, Protocol, training_loss

Tensors = dict[str, torch.Tensor]
CHUNK = 512  # samples per vmap call: large enough to amortise the call, small in memory


def trainable_names(model: nn.Module) -> list[str]:
    """The names of the parameters a client sends updates for, in the model's order."""
    return [k for k, v in model.named_parameters() if v.requires_grad]


def flatten(update: Mapping[str, torch.Tensor], names: Sequence[str], batched: bool = False):
    """One vector (P,) per update; with `batched`, tensors carry a leading dimension M and the
    result is (M, P)."""
    missing = [k for k in names if k not in update]
    if missing:
        raise GradinvError(f"the update has no tensor {missing[0]!r}")
    if batched:
        m = update[names[0]].shape[0]
        return torch.cat([update[k].reshape(m, -1) for k in names], dim=1)
    return torch.cat([update[k].reshape(-1) for k in names])


def unflatten(vector: torch.Tensor, shapes: Mapping[str, torch.Size]) -> Tensors:
    """The inverse of `flatten` for one vector (views, no copy)."""
    out, start = {}, 0
    for k, shape in shapes.items():
        n = int(np.prod(shape)) if len(shape) else 1
        out[k] = vector[start : start + n].view(shape)
        start += n
    return out


def fingerprint(parameters: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, shapes and float32 values of the parameters (sorted by name): an
    inverter is valid only for exactly these weights."""
    digest = hashlib.sha256()
    for name in sorted(parameters):
        v = parameters[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(v.shape)}".encode())
        digest.update(v.numpy().tobytes())
    return digest.hexdigest()


def check_model(model: nn.Module) -> None:
    """Per-sample gradients compose into the batch update only without batch statistics."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise GradinvError(
                f"learned inversion needs a model without BatchNorm (layer {name or 'root'}): "
                "its batch update is not the mean of per-sample gradients"
            )


def check_defenses(defenses: Sequence[Defense]) -> None:
    """Only defenses that post-process the update (apply) can be trained in from per-sample
    gradients; those that change the model or compute the update themselves cannot."""
    for d in defenses:
        cls = type(d)
        if (
            cls.client_update is not Defense.client_update
            or cls.wrap_model is not Defense.wrap_model
        ):
            raise GradinvError(
                f"defense {d.name!r} changes the model or how the update is computed; "
                "train-inverter supports defenses applied to the update (noise, laplace, clip, "
                "prune, sign, quantize, soteria)"
            )


class UpdateMaker:
    """Client updates of the fixed `model` for batches of images in [0,1] (N, C, H, W).

    The model sees (x − mean) / std, its loss is the protocol's (FedSGD). `per_sample` gives one
    flat gradient per image; `updates` the (defended) updates of consecutive groups of B images."""

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        defenses: Sequence[Defense] = (),
        protocol: Protocol | None = None,
    ) -> None:
        check_model(model)
        check_defenses(defenses)
        self.protocol = protocol or Protocol()
        if self.protocol.kind != "fedsgd":
            raise GradinvError("learned inversion is implemented for FedSGD updates only")
        self.model = model.train()  # the client's mode (observe runs the round in train mode)
        self.defenses = list(defenses)
        self.names = trainable_names(model)
        named = dict(model.named_parameters())
        self.params = {k: named[k].detach() for k in self.names}
        self.shapes = {k: v.shape for k, v in self.params.items()}
        self.buffers = {k: v.detach() for k, v in model.named_buffers()}
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        loss = self.protocol.loss_fn

        def sample_loss(p: Tensors, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            run = lambda: functional_call(model, {**self.buffers, **p}, (x[None],))  # noqa: E731
            return training_loss(model, run, y[None], loss)

        self._grad = vmap(grad(sample_loss), in_dims=(None, 0, 0))

    @property
    def size(self) -> int:
        """P: the number of update entries."""
        return sum(int(np.prod(s)) if len(s) else 1 for s in self.shapes.values())

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std

    def per_sample(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, P): the gradient of each image's loss (what a client with B = 1 sends)."""
        out = []
        for s in range(0, len(images), CHUNK):
            g = self._grad(self.params, self.inputs(images[s : s + CHUNK]), labels[s : s + CHUNK])
            out.append(flatten(g, self.names, batched=True).detach())
        return torch.cat(out)

    def updates(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seeds: Sequence[int]
    ) -> torch.Tensor:
        """(N / B, P): the update of each consecutive group of `batch_size` images, defended with
        a generator seeded by `seeds[j]` for group j (the client's round seed)."""
        n = len(images) // batch_size
        if n * batch_size != len(images) or len(seeds) != n:
            raise GradinvError(
                f"{len(images)} images do not form {len(seeds)} batches of {batch_size}"
            )
        g = self.per_sample(images, labels).view(n, batch_size, -1).mean(1)
        if not self.defenses:
            return g
        out = torch.empty_like(g)
        for j in range(n):
            group = slice(j * batch_size, (j + 1) * batch_size)
            round_ = ClientRound(
                self.model, self.params, self.buffers, self.inputs(images[group]),
                labels[group], self.protocol, torch.Generator().manual_seed(int(seeds[j])),
            )  # fmt: skip
            update = unflatten(g[j], self.shapes)
            for d in self.defenses:
                update = d.apply(update, round_)
            out[j] = flatten(update, self.names)
        return out
