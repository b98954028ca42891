"""Running a client round under defenses: wrapping, the update computation (with loss terms a
wrapped model adds), post-processing, and the round's seeded randomness."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn

from ..errors import GradinvError
from ..fl.protocol import forward, loss_fn, simulate_update
from .base import ClientRound, Defense, Tensors

# --- running a client round under one or several defenses ----------------------------------------


def as_list(defenses: Defense | Sequence[Defense] | None) -> list[Defense]:
    if defenses is None:
        return []
    return [defenses] if isinstance(defenses, Defense) else list(defenses)


def wrap(defenses: Defense | Sequence[Defense] | None, model: nn.Module) -> nn.Module:
    """Apply every defense's `wrap_model` in order (done once, when the deployment is set up)."""
    for d in as_list(defenses):
        model = d.wrap_model(model)
    return model


def defended_update(defenses: Defense | Sequence[Defense] | None, round: ClientRound) -> Tensors:
    """The update the client sends under `defenses` (applied in order): at most one defense may
    compute the update itself, then every `apply` post-processes it. Detached tensors."""
    chain = as_list(defenses)
    with bound_generator(round.model, round.generator):
        custom = [(d, u) for d in chain if (u := d.client_update(round)) is not None]
        if len(custom) > 1:
            names = ", ".join(d.name for d, _ in custom)
            raise GradinvError(f"defenses {names} each compute the whole update; use one of them")
        if custom:
            update = custom[0][1]
        elif has_loss_terms(round.model):
            update = local_update(round)
        else:
            update = simulate_update(
                round.model, round.params, round.buffers, round.x, round.targets, round.protocol
            )
        update = {k: v.detach() for k, v in update.items()}
        for d in chain:
            update = d.apply(update, round)
    return {k: v.detach() for k, v in update.items()}


# --- loss terms contributed by the model (PRECODE's β·KL) -------------------------------------------


class LossTerm(nn.Module):
    """A module adding a term to the client's training loss: its forward calls `add_penalty`,
    which records the value only while `training_loss` collects (nothing is kept otherwise, so
    the module stays deep-copyable and inference is unaffected)."""

    _penalties: list[torch.Tensor] | None = None

    def add_penalty(self, value: torch.Tensor) -> None:
        if self._penalties is not None:
            self._penalties.append(value)


def has_loss_terms(model: nn.Module) -> bool:
    return any(isinstance(m, LossTerm) for m in model.modules())


def training_loss(
    model: nn.Module, run: Callable[[], torch.Tensor], targets: torch.Tensor
) -> torch.Tensor:
    """The protocol's loss on the logits `run()` returns, plus every penalty `model`'s LossTerm
    modules add during that forward pass."""
    terms = [m for m in model.modules() if isinstance(m, LossTerm)]
    bag: list[torch.Tensor] = []
    for m in terms:
        m._penalties = bag
    try:
        logits = run()
    finally:
        for m in terms:
            m._penalties = None
    return loss_fn(logits, targets) + sum(bag)


def local_update(round: ClientRound) -> Tensors:
    """The protocol's client computation (as gradinv.fl.protocol.simulate_update: FedSGD gradient
    or FedAvg weight delta) with `training_loss`, for models that add loss terms.

    TODO: drop once fl.Protocol carries the loss (the fl rewrite); until then this mirrors
    simulate_update step for step."""
    model, buffers, protocol = round.model, round.buffers, round.protocol
    names = list(round.params)
    n = round.x.shape[0]
    step = n if protocol.kind == "fedsgd" else (protocol.local_batch_size or n)
    epochs = 1 if protocol.kind == "fedsgd" else protocol.local_epochs
    current = dict(round.params)
    for _ in range(epochs):
        for s in range(0, n, step):
            xb, yb = round.x[s : s + step], round.targets[s : s + step]
            loss = training_loss(model, lambda c=current, xb=xb: forward(model, c, buffers, xb), yb)
            grads = torch.autograd.grad(loss, [current[k] for k in names])
            if protocol.kind == "fedsgd":
                return dict(zip(names, grads, strict=True))
            current = {
                k: (current[k] - protocol.local_lr * g).detach().requires_grad_(True)
                for k, g in zip(names, grads, strict=True)
            }
    return {k: current[k].detach() - round.params[k].detach() for k in names}


# --- randomness --------------------------------------------------------------------------------


class Stochastic(nn.Module):
    """A module drawing random numbers in its forward pass (PRECODE's bottleneck): the client binds
    its round generator to it, so the same seed gives the same update. Unbound (e.g. in an
    attacker's simulation) it uses torch's global generator."""

    generator: torch.Generator | None = None


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
