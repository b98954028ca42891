"""What the closed-form attacks share: tracing the model's layer chain, reading the update as a
FedSGD gradient, the batch size, and row-space bases of rank-B gradients."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import GradinvError
from ..fl import Observation
from ..labels import batch_size_of


@dataclass
class Step:
    """One leaf module as it was called in a forward pass, with the parameter names it owns."""

    module: nn.Module
    names: dict[str, str]  # attribute ("weight", "bias") -> parameter name in the observation
    input: torch.Tensor
    output: torch.Tensor


def trace(observation: Observation) -> list[Step]:
    """Leaf modules in call order for one dummy input (eval mode, no grad)."""
    model = observation.model
    owner = {id(p): name for name, p in model.named_parameters()}
    steps: list[Step] = []
    hooks = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        names = {
            attr: owner[id(p)]
            for attr, p in module.named_parameters(recurse=False)
            if id(p) in owner
        }
        x = inputs[0] if inputs else None
        if isinstance(x, torch.Tensor) and isinstance(output, torch.Tensor):
            steps.append(Step(module, names, x.detach(), output.detach()))

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((1, *observation.input_shape), generator=gen, dtype=torch.float64)
        with torch.no_grad():
            model(x.to(p.device, p.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return steps


@dataclass
class FirstLinear:
    """The model's first trainable layer when it is linear: weight/bias names and what follows."""

    weight: str
    bias: str
    activation: nn.Module | None  # the leaf module applied right after the linear layer
    next_weight: (
        str | None
    )  # the next linear layer's weight, when it directly follows the activation


def first_linear(observation: Observation, attack: str) -> FirstLinear:
    """Locate a first linear layer with bias applied to the (flattened) input, or refuse."""
    steps = trace(observation)
    index = next((i for i, s in enumerate(steps) if s.names), None)
    if index is None:
        raise GradinvError(f"{attack}: the model has no trainable layer")
    step = steps[index]
    kind = type(step.module).__name__
    if not isinstance(step.module, nn.Linear):
        raise GradinvError(
            f"{attack} needs a model whose first trainable layer is linear (e.g. mlp4); "
            f"this model starts with {kind}"
        )
    if "bias" not in step.names or "weight" not in step.names:
        raise GradinvError(f"{attack} needs a trainable bias in the first linear layer")
    d = 1
    for v in observation.input_shape:
        d *= v
    if step.input.dim() != 2 or step.input.shape[1] != d:
        raise GradinvError(
            f"{attack} needs the first linear layer to see the flattened input; it sees "
            f"{tuple(step.input.shape[1:])}"
        )
    activation, next_weight = None, None
    if index + 1 < len(steps):
        nxt = steps[index + 1]
        if not nxt.names and nxt.input.shape == step.output.shape:
            activation = nxt.module
            if index + 2 < len(steps):
                after = steps[index + 2]
                if isinstance(after.module, nn.Linear) and "weight" in after.names:
                    next_weight = after.names["weight"]
    return FirstLinear(step.names["weight"], step.names["bias"], activation, next_weight)


def gradients(observation: Observation, attack: str) -> dict[str, torch.Tensor]:
    """The update as the mean-loss gradient, in float64. FedAvg is accepted only for a single
    full-batch local step (Δθ = −lr·g); anything else is refused."""
    p = observation.protocol
    for name, g in observation.update.items():
        if not torch.isfinite(g).all():
            raise GradinvError(f"{attack}: the update of {name} contains NaN or Inf")
    if p.kind == "fedsgd":
        return {k: v.detach().double() for k, v in observation.update.items()}
    b = observation.batch_size
    one_step = p.local_epochs == 1 and (
        p.local_batch_size is None or (b is not None and p.local_batch_size >= b)
    )
    if not one_step:
        raise GradinvError(
            f"{attack} inverts FedSGD gradients (or FedAvg with one full-batch local step); "
            f"this FedAvg update has {p.local_epochs} epoch(s) of local batch size "
            f"{p.local_batch_size}: use --protocol fedsgd or an optimisation attack"
        )
    return {k: -v.detach().double() / p.local_lr for k, v in observation.update.items()}


def batch_size(observation: Observation) -> int:
    """The batch size the server was told, or the rank estimate."""
    return batch_size_of(observation)


def row_basis(matrix: torch.Tensor, rank: int, seed: int = 0) -> torch.Tensor:
    """Orthonormal basis (rank × n) of the row space of a (numerically) rank-`rank` matrix, by a
    randomised range finder (cheap for a wide m × n gradient)."""
    return row_basis_noise(matrix, rank, seed)[0]


def row_basis_noise(matrix: torch.Tensor, rank: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """`row_basis` plus the noise floor: the first discarded singular value relative to the
    smallest kept one (0 when nothing is discarded)."""
    gen = torch.Generator().manual_seed(seed)
    omega = torch.randn(
        (matrix.shape[0], min(rank + 10, matrix.shape[0])), generator=gen, dtype=matrix.dtype
    )
    y = matrix.T @ omega  # n × (rank + 10), spans the row space
    q, _ = torch.linalg.qr(y)
    # Project once more and keep the leading `rank` directions.
    small = matrix @ q  # m × (rank + 10)
    _, sv, vh = torch.linalg.svd(small, full_matrices=False)
    noise = float(sv[rank] / sv[rank - 1]) if len(sv) > rank and sv[rank - 1] > 0 else 0.0
    return (q @ vh[:rank].T).T.contiguous(), noise


def to_images(observation: Observation, x: torch.Tensor) -> torch.Tensor:
    """Flat model-space inputs (B, d), float64 -> images in [0,1], the observation's dtype, cpu."""
    x = x.reshape(x.shape[0], *observation.input_shape).to(observation.device, observation.dtype)
    return observation.denormalize(x).clamp(0, 1).cpu()
