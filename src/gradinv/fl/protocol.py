"""The client's local computation, written once and used by both sides: the simulated client that
produces an observation, and every attack that differentiates through the same computation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..errors import GradinvError

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Protocol:
    """What the client computes. FedSGD: gradient of the mean cross-entropy. FedAvg: `local_epochs`
    passes of SGD (lr `local_lr`) over the batch in fixed order, minibatches of `local_batch_size`
    (None = whole batch); the update is the weight delta θ_after − θ_before."""

    kind: Literal["fedsgd", "fedavg"] = "fedsgd"
    local_epochs: int = 1
    local_lr: float = 0.01
    local_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("fedsgd", "fedavg"):
            raise GradinvError(f"unknown protocol {self.kind!r}; choose from: fedsgd, fedavg")
        if self.local_epochs < 1:
            raise GradinvError(f"local epochs must be >= 1, got {self.local_epochs}")
        if not self.local_lr > 0:
            raise GradinvError(f"local learning rate must be > 0, got {self.local_lr}")
        if self.local_batch_size is not None and self.local_batch_size < 1:
            raise GradinvError(f"local batch size must be >= 1, got {self.local_batch_size}")

    def to_dict(self) -> dict:
        return asdict(self)


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; `targets` are class indices or per-class probabilities (soft labels)."""
    return F.cross_entropy(logits, targets)


def forward(model: nn.Module, params: Mapping, buffers: Mapping, x: torch.Tensor) -> torch.Tensor:
    # Buffers are cloned (the model's own ones too, for those not given): BatchNorm in train mode
    # would otherwise update the caller's running statistics on every call.
    own = {k: v.clone() for k, v in model.named_buffers() if k not in buffers}
    state = {**own, **params, **{k: v.clone() for k, v in buffers.items()}}
    return functional_call(model, state, (x,))


def simulate_update(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    targets: torch.Tensor,
    protocol: Protocol,
    create_graph: bool = False,
) -> Tensors:
    """The update the client would send for inputs `x` (model input space) and `targets`.

    `params` must require grad. With `create_graph=True` the result is differentiable in `x` and
    `targets` (what attacks need)."""
    names = list(params)
    if protocol.kind == "fedsgd":
        loss = loss_fn(forward(model, params, buffers, x), targets)
        grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph)
        return dict(zip(names, grads, strict=True))
    current = dict(params)
    n = x.shape[0]
    step = protocol.local_batch_size or n
    for _ in range(protocol.local_epochs):
        for start in range(0, n, step):
            loss = loss_fn(
                forward(model, current, buffers, x[start : start + step]),
                targets[start : start + step],
            )
            grads = torch.autograd.grad(
                loss, [current[k] for k in names], create_graph=create_graph
            )
            current = {
                k: current[k] - protocol.local_lr * g for k, g in zip(names, grads, strict=True)
            }
    return {k: current[k] - params[k] for k in names}


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
