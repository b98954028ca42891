"""What every label strategy shares: locating the classifier layer in an observation, reading its
update as a mean gradient, the model's last-layer embeddings of dummy inputs, and turning real-valued
class counts into a label multiset of exactly B labels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import GradinvError
from ..fl import Observation
from ..fl.protocol import forward


@dataclass
class LastLayerSignal:
    """The last linear layer's update read as the mean gradient over the batch.

    FedSGD: the gradient itself. FedAvg: the update is θ_after − θ_before ≈ −lr·Σ_steps gradients,
    so it is divided by −lr·steps (exact for one full-batch local step, an average of the step
    gradients otherwise)."""

    weight: torch.Tensor  # (classes, features), float64
    bias: torch.Tensor | None  # (classes,), float64
    weight_name: str
    scale: float = 1.0  # what the raw update was divided by (1 for FedSGD, −lr·steps for FedAvg)

    @property
    def per_class(self) -> torch.Tensor:
        """Per-class signal, negative for classes present: ∇b if there is a bias, else row sums of ∇W."""
        return self.bias if self.bias is not None else self.weight.sum(dim=1)

    @property
    def module_name(self) -> str:
        return self.weight_name.rsplit(".", 1)[0] if "." in self.weight_name else ""


def check_batch_size(batch_size: int, strategy: str) -> int:
    """A batch size strategies can work with, or a GradinvError naming the problem."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise GradinvError(
            f"label strategy {strategy!r} needs a batch size >= 1, got {batch_size!r}"
        )
    return batch_size


def local_steps(observation: Observation, batch_size: int) -> int:
    """Number of SGD steps a FedAvg client took (1 for FedSGD)."""
    p = observation.protocol
    if p.kind == "fedsgd":
        return 1
    per_epoch = math.ceil(batch_size / (p.local_batch_size or batch_size))
    return p.local_epochs * per_epoch


def last_layer_signal(observation: Observation, batch_size: int | None = None) -> LastLayerSignal:
    """The classifier's update as a mean gradient (see LastLayerSignal). Raises a GradinvError when
    the model does not end in a linear layer with `num_classes` outputs, or the update holds
    NaN/Inf. `batch_size` only matters for FedAvg with local minibatches (it sets the step count)."""
    for name, tensor in observation.update.items():
        if not torch.isfinite(tensor).all():
            raise GradinvError(
                f"the update of {name} contains NaN or Inf; labels cannot be recovered"
            )
    names = list(observation.update)
    k = observation.num_classes
    weight_name = next(
        (
            n
            for n in reversed(names)
            if observation.update[n].ndim == 2 and observation.update[n].shape[0] == k
        ),
        None,
    )
    if weight_name is None or weight_name != _last_weight(names, observation):
        raise GradinvError(
            f"label recovery needs a linear last layer with {k} outputs; the model's last layer "
            "is not one (strategies work on models ending in nn.Linear)"
        )
    scale = 1.0
    if observation.protocol.kind == "fedavg":
        b = batch_size or observation.batch_size or 1
        scale = -observation.protocol.local_lr * local_steps(observation, b)
    weight = observation.update[weight_name].double() / scale
    prefix = weight_name.rsplit(".", 1)[0] + "." if "." in weight_name else ""
    bias = observation.update.get(prefix + "bias")
    if weight.abs().max() == 0:
        raise GradinvError(f"the update of {weight_name} is all zero; no label information")
    return LastLayerSignal(
        weight, None if bias is None else bias.double() / scale, weight_name, scale
    )


def _last_weight(names: list[str], observation: Observation) -> str | None:
    """The last multi-dimensional parameter: the classifier's weight in a standard model."""
    return next((n for n in reversed(names) if observation.update[n].ndim >= 2), None)


def classifier(
    observation: Observation, signal: LastLayerSignal
) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's weight (classes, features) and bias (zeros when it has none), float64."""
    weight = observation.parameters[signal.weight_name].detach().double()
    bias_name = (signal.module_name + "." if signal.module_name else "") + "bias"
    bias = observation.parameters.get(bias_name)
    bias = (
        torch.zeros(weight.shape[0], dtype=torch.float64, device=weight.device)
        if bias is None
        else bias.detach().double()
    )
    return weight, bias


def dummy_embeddings(
    observation: Observation, signal: LastLayerSignal, count: int = 64, seed: int = 0
) -> torch.Tensor:
    """Last-layer inputs (count, features) of the model on smooth random images in [0,1] (no real
    data needed), run in the client's mode (train/eval) with the observed buffers."""
    gen = torch.Generator().manual_seed(seed)
    c, h, w = observation.input_shape
    coarse = torch.rand(
        count, c, max(1, h // 4), max(1, w // 4), generator=gen, dtype=torch.float64
    )
    images = nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    images = images.to(observation.device, observation.dtype)
    module = observation.model.get_submodule(signal.module_name)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0].detach()))
    was_training = observation.model.training
    observation.model.train(observation.train_mode)
    try:
        with torch.no_grad():
            forward(
                observation.model,
                observation.parameters,
                observation.buffers,
                observation.normalize(images),
            )
    finally:
        handle.remove()
        observation.model.train(was_training)
    return captured[0].flatten(1).double()


def round_counts(
    counts: torch.Tensor, batch_size: int, required: torch.Tensor | None = None
) -> torch.Tensor:
    """Integer counts ≥ 0 summing to `batch_size` closest to real-valued `counts` (largest
    remainder); classes in `required` (bool mask) get at least one when there is room."""
    real = counts.double().clamp_min(0)
    if real.sum() > 0:
        real = real * (batch_size / real.sum())
    out = real.floor().long()
    if required is not None and int(required.sum()) > batch_size:
        required = None
    if required is not None:
        out = torch.where(required & (out == 0), torch.ones_like(out), out)
    while int(out.sum()) < batch_size:
        out[int((real - out).argmax())] += 1
    while int(out.sum()) > batch_size:
        floor = torch.zeros_like(out) if required is None else required.long()
        excess = torch.where(out > floor, out - real, torch.full_like(real, -math.inf))
        out[int(excess.argmax())] -= 1
    return out


def counts_to_labels(counts: torch.Tensor) -> torch.Tensor:
    """Sorted label multiset (int64, cpu) from per-class counts."""
    return torch.repeat_interleave(torch.arange(len(counts)), counts.long().cpu())


def greedy_labels(
    signal: torch.Tensor, present: torch.Tensor, batch_size: int, step: float
) -> torch.Tensor:
    """LLG's greedy: take every class in `present` once, then repeatedly the argmin class; each
    time a class is taken its signal grows by `step` (the impact of one sample of that class)."""
    signal = signal.clone()
    labels: list[int] = []
    for c in torch.nonzero(present).flatten().tolist()[:batch_size]:
        labels.append(c)
        signal[c] += step
    while len(labels) < batch_size:
        c = int(signal.argmin())
        labels.append(c)
        signal[c] += step
    return torch.tensor(sorted(labels), dtype=torch.long)
