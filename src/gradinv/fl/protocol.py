"""The client's local computation, written once and used by both sides: the simulated client that
produces an observation, and every attack that differentiates through the same computation.

`client_update` is a pure function of (parameters, inputs, targets) built on torch.func, so an
attack can run it for many dummy batches at once (vmap) and differentiate through it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad

from ..errors import GradinvError

Tensors = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; `targets` are class indices or per-class probabilities (soft labels)."""
    return F.cross_entropy(logits, targets)


def mean_squared_error(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the outputs and one-hot targets (or given probabilities)."""
    if not targets.is_floating_point():
        targets = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
    return F.mse_loss(logits, targets)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "mse": mean_squared_error}


@dataclass(frozen=True)
class Protocol:
    """What the client computes. FedSGD: gradient of the mean training loss. FedAvg: `local_epochs`
    passes of SGD (lr `local_lr`) over the batch in fixed order, minibatches of `local_batch_size`
    (None = whole batch); the update is the weight delta θ_after − θ_before.

    `loss` is the client's training loss: "ce" (cross-entropy, the default), "mse" (outputs vs
    one-hot targets), or a callable `(outputs, targets) -> scalar` — the server simulates the
    client's real loss, so it is part of the protocol."""

    kind: Literal["fedsgd", "fedavg"] = "fedsgd"
    local_epochs: int = 1
    local_lr: float = 0.01
    local_batch_size: int | None = None
    loss: str | LossFn = field(default="ce")

    def __post_init__(self) -> None:
        if self.kind not in ("fedsgd", "fedavg"):
            raise GradinvError(f"unknown protocol {self.kind!r}; choose from: fedsgd, fedavg")
        if isinstance(self.local_epochs, bool) or not isinstance(self.local_epochs, int):
            raise GradinvError(f"local epochs must be an integer, got {self.local_epochs!r}")
        if self.local_epochs < 1:
            raise GradinvError(f"local epochs must be >= 1, got {self.local_epochs}")
        if not (isinstance(self.local_lr, (int, float)) and 0 < self.local_lr < float("inf")):
            raise GradinvError(f"local learning rate must be > 0 and finite, got {self.local_lr}")
        if self.local_batch_size is not None and self.local_batch_size < 1:
            raise GradinvError(f"local batch size must be >= 1, got {self.local_batch_size}")
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            raise GradinvError(
                f"unknown loss {self.loss!r}; choose from: {', '.join(LOSSES)}, or a callable"
            )
        if not isinstance(self.loss, str) and not callable(self.loss):
            raise GradinvError(f"loss must be a name or a callable, got {self.loss!r}")

    @property
    def loss_fn(self) -> LossFn:
        return LOSSES[self.loss] if isinstance(self.loss, str) else self.loss

    @property
    def loss_name(self) -> str:
        """ "ce", "mse", or the custom loss's spec (`file.py:function`) or qualified name."""
        if isinstance(self.loss, str):
            return self.loss
        return getattr(self.loss, "gradinv_spec", None) or "custom:" + getattr(
            self.loss, "__qualname__", type(self.loss).__name__
        )

    @property
    def cross_entropy(self) -> bool:
        return self.loss == "ce"

    def steps(self, batch_size: int) -> int:
        """Number of SGD steps the client takes (1 for FedSGD)."""
        if self.kind == "fedsgd":
            return 1
        b = self.local_batch_size or batch_size
        return self.local_epochs * -(-batch_size // b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "local_epochs": self.local_epochs,
            "local_lr": self.local_lr,
            "local_batch_size": self.local_batch_size,
            "loss": self.loss_name,
        }


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The default training loss (cross-entropy)."""
    return cross_entropy(logits, targets)


class LossTerm(nn.Module):
    """A module that adds a term to the client's training loss (e.g. PRECODE's β·KL): its forward
    calls `add_penalty`, which records the value only while `training_loss` collects — the term is
    consumed inside the same (possibly vmapped) computation, so nothing leaks out of it."""

    _penalties: list[torch.Tensor] | None = None

    def add_penalty(self, value: torch.Tensor) -> None:
        if self._penalties is not None:
            self._penalties.append(value)


class Stochastic(nn.Module):
    """A module drawing random numbers in its forward pass: the client binds its round generator
    (same seed, same update). An attacker cannot know the draws: with `sample = False` the module
    uses its expected value instead (deterministic, and safe under vmap)."""

    generator: torch.Generator | None = None
    sample: bool = True


@contextmanager
def bound_generator(model: nn.Module, generator: torch.Generator | None) -> Iterator[None]:
    """Bind `generator` to every Stochastic module of `model` for the duration of the block."""
    modules = [m for m in model.modules() if isinstance(m, Stochastic)]
    before = [m.generator for m in modules]
    for m in modules:
        m.generator = generator
    try:
        yield
    finally:
        for m, g in zip(modules, before, strict=True):
            m.generator = g


def training_loss(
    model: nn.Module, run: Callable[[], torch.Tensor], targets: torch.Tensor, loss: LossFn = loss_fn
) -> torch.Tensor:
    """`loss` on the outputs `run()` returns, plus every term `model`'s LossTerm modules add
    during that forward pass."""
    terms = [m for m in model.modules() if isinstance(m, LossTerm)]
    if not terms:
        return loss(run(), targets)
    bag: list[torch.Tensor] = []
    for m in terms:
        m._penalties = bag
    try:
        outputs = run()
    finally:
        for m in terms:
            m._penalties = None
    total = loss(outputs, targets)
    for value in bag:
        total = total + value
    return total


def forward(model: nn.Module, params: Mapping, buffers: Mapping, x: torch.Tensor) -> torch.Tensor:
    """Outputs of `model` with the given tensors. Buffers are cloned (the model's own ones too, for
    those not given): BatchNorm in train mode would otherwise update the caller's statistics."""
    own = {k: v.clone() for k, v in model.named_buffers() if k not in buffers}
    state = {**own, **params, **{k: v.clone() for k, v in buffers.items()}}
    return functional_call(model, state, (x,))


def client_update(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    targets: torch.Tensor,
    protocol: Protocol,
    functional: bool = True,
) -> Tensors:
    """The update the client sends for inputs `x` (model input space) and `targets`, as a pure
    function (torch.func): differentiable in `x` and `targets` when they require grad, and usable
    under `torch.func.vmap`. `buffers` must not be updated in place under vmap: attacks pass a
    model whose BatchNorm layers do not track running statistics.

    `functional=False` computes the same update with plain autograd (`params` must then require
    grad; the graph is kept): faster for one dummy batch, but not usable under vmap."""
    loss = protocol.loss_fn

    # buffers are an argument, not captured: BatchNorm may update them in place (client side)
    def batch_loss(p: Mapping, b: Mapping, xb: torch.Tensor, tb: torch.Tensor):  # noqa: ANN202
        return training_loss(model, lambda: functional_call(model, {**b, **p}, (xb,)), tb, loss)

    def gradient(p: Mapping, b: Mapping, xb: torch.Tensor, tb: torch.Tensor) -> Tensors:
        if functional:
            return grad(batch_loss)(p, b, xb, tb)
        names = list(p)
        g = torch.autograd.grad(batch_loss(p, b, xb, tb), [p[k] for k in names], create_graph=True)
        return dict(zip(names, g, strict=True))

    params, buffers = dict(params), dict(buffers)
    if protocol.kind == "fedsgd":
        return gradient(params, buffers, x, targets)
    current = params
    n = x.shape[0]
    step = protocol.local_batch_size or n
    for _ in range(protocol.local_epochs):
        for start in range(0, n, step):
            xb, tb = x[start : start + step], targets[start : start + step]
            g = gradient(current, buffers, xb, tb)
            current = {k: current[k] - protocol.local_lr * g[k] for k in current}
    return {k: current[k] - params[k] for k in params}


def simulate_update(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    targets: torch.Tensor,
    protocol: Protocol,
    create_graph: bool = False,
) -> Tensors:
    """`client_update` with the model's own buffers filled in and copied (safe for callers that
    hold a live model). With `create_graph=False` the result is detached."""
    own = {k: v.clone() for k, v in model.named_buffers() if k not in buffers}
    state = {**own, **{k: v.clone() for k, v in buffers.items()}}
    update = client_update(model, params, state, x, targets, protocol)
    return update if create_graph else {k: v.detach() for k, v in update.items()}


def batchnorm_statistics(
    model: nn.Module, params: Mapping, buffers: Mapping, x: torch.Tensor
) -> Tensors:
    """Per-channel mean and (biased) variance of the input of every BatchNorm layer during one
    forward pass of `x` in the model's current mode: {"<layer>.mean": (C,), "<layer>.var": (C,)}.
    Differentiable in `x`; empty for a model without BatchNorm."""
    stats: Tensors = {}
    handles = []

    def hook(name: str):  # noqa: ANN202
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            h = inputs[0]
            dims = [0, *range(2, h.ndim)]
            stats[f"{name}.mean"] = h.mean(dim=dims)
            stats[f"{name}.var"] = h.var(dim=dims, unbiased=False)

        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_pre_hook(hook(name)))
    try:
        if handles:
            forward(model, params, buffers, x)
    finally:
        for h in handles:
            h.remove()
    return stats
