"""What the server can rebuild from one Flower reply: the client's protocol (from the train config
and the reply's metrics) and its update (from the weights it sent and the weights it got back).

Pure torch: no Flower import here, so the arithmetic is testable on its own."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ...errors import GradinvError
from ...fl import Protocol
from ...fl.protocol import LossFn, Tensors

# Canonical fact -> the key Flower apps usually use for it (overridable with `keys=`).
DEFAULT_KEYS: dict[str, str] = {
    "lr": "lr",
    "local-epochs": "local-epochs",
    "batch-size": "batch-size",
    "num-examples": "num-examples",
}


def merge_keys(keys: Mapping[str, str] | None) -> dict[str, str]:
    """DEFAULT_KEYS with the user's renames; an unknown fact is an error naming the valid ones."""
    merged = dict(DEFAULT_KEYS)
    for fact, key in (keys or {}).items():
        if fact not in DEFAULT_KEYS:
            raise GradinvError(
                f"unknown key {fact!r} in keys=; choose from: {', '.join(DEFAULT_KEYS)}"
            )
        if not isinstance(key, str) or not key:
            raise GradinvError(f"keys[{fact!r}] must be a non-empty string, got {key!r}")
        merged[fact] = key
    return merged


@dataclass(frozen=True)
class RoundFacts:
    """The protocol facts of one client's round, as the server knows them."""

    lr: float
    local_epochs: int
    batch_size: int | None  # the local minibatch size (None: the whole local dataset)
    num_examples: int  # the client's number of training examples: gradinv's batch size

    def protocol(self, loss: str | LossFn = "ce") -> Protocol:
        """FedSGD when the client takes exactly one step over its whole batch, else FedAvg."""
        whole = self.batch_size is None or self.batch_size >= self.num_examples
        if self.local_epochs == 1 and whole:
            return Protocol("fedsgd", 1, self.lr, None, loss)
        local = None if whole else self.batch_size
        return Protocol("fedavg", self.local_epochs, self.lr, local, loss)


def config_facts(
    config: Mapping[str, Any], keys: Mapping[str, str], known: Mapping[str, Any], where: str
) -> tuple[float, int, int | None]:
    """lr, local epochs and local batch size from the train config sent to a client (or `known`:
    facts the server knows from elsewhere). Checked when the round is configured, before any
    client trains."""
    lr = _number(_fact("lr", config, keys, known, where, "train config"), "lr", where)
    if not (math.isfinite(lr) and lr > 0):
        raise GradinvError(f"{where}: lr must be > 0 and finite, got {lr}")
    epochs = _fact("local-epochs", config, keys, known, where, "train config")
    batch = _fact("batch-size", config, keys, known, where, "train config")
    batch = None if batch is None else _integer(batch, "batch-size", where)  # None: whole batch
    return lr, _integer(epochs, "local-epochs", where), batch


def round_facts(
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    keys: Mapping[str, str],
    known: Mapping[str, Any],
    where: str,
) -> RoundFacts:
    """The config's facts plus the client's number of examples from its reply's metrics."""
    lr, epochs, batch = config_facts(config, keys, known, where)
    examples = _fact("num-examples", metrics, keys, known, where, "reply's MetricRecord")
    return RoundFacts(lr, epochs, batch, _integer(examples, "num-examples", where))


def _fact(
    name: str,
    source: Mapping[str, Any],
    keys: Mapping[str, str],
    known: Mapping[str, Any],
    where: str,
    kind: str,
) -> Any:
    if keys[name] in source:
        return source[keys[name]]
    if name in known:
        return known[name]
    raise GradinvError(
        f"{where}: the {kind} has no {keys[name]!r}; rename it with keys={{{name!r}: ...}} or "
        f"give its value with known={{{name!r}: ...}}"
    )


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GradinvError(f"{where}: {name} must be a number, got {value!r}")
    return float(value)


def _integer(value: Any, name: str, where: str) -> int:
    number = _number(value, name, where)
    if not math.isfinite(number) or number != int(number) or number < 1:
        raise GradinvError(f"{where}: {name} must be an integer >= 1, got {value!r}")
    return int(number)


def split_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], where: str
) -> tuple[Tensors, Tensors, Tensors]:
    """(trainable parameters, frozen parameters, buffers) of a state dict the server sent, checked
    against the model's names and shapes: a mismatch means the audit holds the wrong model.
    Buffers the server does not send are simply not part of the observation."""
    own = model.state_dict()
    params = dict(model.named_parameters())
    extra = sorted(set(state) - set(own))
    missing = sorted(set(params) - set(state))  # buffers may be withheld: the server lacks them
    if extra or missing:
        detail = f"unknown to the model: {extra[:3]}" if extra else f"missing: {missing[:3]}"
        raise GradinvError(f"{where}: the arrays do not match the audit's model ({detail})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise GradinvError(
                f"{where}: the arrays do not match the audit's model ({k}: shape "
                f"{tuple(v.shape)}, the model's {tuple(own[k].shape)})"
            )
    trainable = {k: state[k] for k, p in params.items() if p.requires_grad}
    frozen = {k: state[k] for k, p in params.items() if not p.requires_grad}
    buffers = {k: state[k] for k in state if k not in params}
    return trainable, frozen, buffers


def client_update(
    sent: Tensors, returned: Mapping[str, torch.Tensor], protocol: Protocol, where: str
) -> Tensors:
    """The update in gradinv's convention, from the weights sent and those returned.

    FedAvg: the weight delta θ_new − θ_global. FedSGD (one plain-SGD step over the whole batch):
    the gradient of the mean loss, g = (θ_global − θ_new) / lr, computed in float64 so the
    division adds no rounding of its own."""
    missing = sorted(set(sent) - set(returned))
    if missing:
        raise GradinvError(f"{where}: the reply lacks the trained parameter(s) {missing[:3]}")
    update: Tensors = {}
    for k, before in sent.items():
        after = returned[k]
        if tuple(after.shape) != tuple(before.shape):
            raise GradinvError(
                f"{where}: the reply's {k} has shape {tuple(after.shape)}, "
                f"the server sent {tuple(before.shape)}"
            )
        delta = after.double() - before.double()
        value = -delta / protocol.local_lr if protocol.kind == "fedsgd" else delta
        update[k] = value.to(before.dtype)
    return update
