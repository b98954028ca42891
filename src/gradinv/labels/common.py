"""Locating the classifier layer in an observation, shared by every label strategy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GradinvError
from ..fl import Observation


@dataclass
class LastLayerSignal:
    """The last linear layer's gradient, sign-corrected: for FedAvg the update is −lr·(sum of
    gradients), so we negate it and it reads like a gradient again."""

    weight: torch.Tensor  # (classes, features)
    bias: torch.Tensor | None  # (classes,)
    weight_name: str

    @property
    def per_class(self) -> torch.Tensor:
        """Per-class signal, negative for classes present: ∇b if there is a bias, else row sums of ∇W."""
        return self.bias if self.bias is not None else self.weight.sum(dim=1)


def last_layer_signal(observation: Observation) -> LastLayerSignal:
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
            f"label recovery needs a linear last layer with {k} outputs; the model's last layer is not one"
        )
    sign = 1.0 if observation.protocol.kind == "fedsgd" else -1.0
    weight = sign * observation.update[weight_name].double()
    bias_name = weight_name.rsplit(".", 1)[0] + ".bias" if "." in weight_name else "bias"
    bias = observation.update.get(bias_name)
    if not torch.isfinite(weight).all() or (bias is not None and not torch.isfinite(bias).all()):
        raise GradinvError("the last layer's update contains NaN or Inf")
    return LastLayerSignal(weight, None if bias is None else sign * bias.double(), weight_name)


def _last_weight(names: list[str], observation: Observation) -> str | None:
    """The last multi-dimensional parameter: the classifier's weight in a standard model."""
    return next((n for n in reversed(names) if observation.update[n].ndim >= 2), None)
