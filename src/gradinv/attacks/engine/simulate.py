"""ĝ(x̂, ŷ): the update the observed client would have sent for dummy batches, for many dummy
batches at once and differentiable in them."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch.func import replace_all_batch_norm_modules_, vmap

from ...errors import GradinvError
from ...fl import Observation, Stochastic, client_update

Tensors = dict[str, torch.Tensor]
# A transform of the simulated update before it is compared (defense-aware attacks re-apply the
# deterministic part of a known defense): f(update) -> update, differentiable.
Transform = Callable[[Tensors], Tensors]


class UpdateSimulator:
    """Simulates the client's update for M dummy batches of B images.

    It runs on its own copy of the observation's sealed model, prepared once: parameters are
    constants, BatchNorm layers in train mode do not track running statistics (nothing is written
    in place, so many batches can run under vmap), and no tensor is copied per call.

    `layers` restricts the comparison to some parameters (e.g. PRECODE's known break: ignore the
    bottleneck's gradients); `transform` and `masks` implement defense-aware matching."""

    def __init__(
        self,
        observation: Observation,
        layers: Sequence[str] | None = None,
        transform: Transform | None = None,
        masks: Tensors | None = None,
    ) -> None:
        obs = observation
        model = copy.deepcopy(obs.model)
        for p in model.parameters():
            p.requires_grad_(False)
        model.train(obs.train_mode)
        if obs.train_mode:
            replace_all_batch_norm_modules_(model)
        for m in model.modules():
            if isinstance(m, Stochastic):  # the client's draws are secret: use expected values
                m.sample = False
        self.model = model
        self.protocol = obs.protocol
        self.params = {k: v.detach() for k, v in obs.parameters.items()}
        # leaves for the plain-autograd path of a single dummy batch (cheaper than torch.func)
        self.leaves = {k: v.detach().clone().requires_grad_(True) for k, v in self.params.items()}
        names = list(obs.parameters) if layers is None else list(layers)
        unknown = [n for n in names if n not in obs.update]
        if unknown or not names:
            raise GradinvError(
                f"cannot match layers {unknown or names}; the update holds: {', '.join(obs.update)}"
            )
        self.names = names
        self.transform = transform
        self.masks = masks
        target = {k: obs.update[k] for k in names}
        self.target = [self._masked(k, v) for k, v in target.items()]

    def _masked(self, name: str, value: torch.Tensor) -> torch.Tensor:
        if self.masks is None or name not in self.masks:
            return value
        return value * self.masks[name].to(value.dtype)

    def _member(
        self, x: torch.Tensor, targets: torch.Tensor, functional: bool = True
    ) -> list[torch.Tensor]:
        params = self.params if functional else self.leaves
        update = client_update(self.model, params, {}, x, targets, self.protocol, functional)
        if self.transform is not None:
            update = self.transform(update)
        return [self._masked(k, update[k]) for k in self.names]

    def __call__(self, x: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        """x: (M, B, C, H, W) in model input space; targets: (B,) class indices shared by all
        members, or (M, B) indices, or (M, B, K) probabilities. Returns one (M, ...) tensor per
        compared layer."""
        shared = targets.ndim == 1
        if x.shape[0] == 1:  # one dummy batch: plain autograd, no vmap (overhead matters here)
            with torch.enable_grad():  # the update is a gradient, even when the caller scores
                out = self._member(x[0], targets if shared else targets[0], functional=False)
            return [g.unsqueeze(0) for g in out]
        fn = vmap(self._member, in_dims=(0, None if shared else 0))
        return fn(x, targets)
