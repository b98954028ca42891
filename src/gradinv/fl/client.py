"""A simulated client: computes its update on a private batch and hands the server an Observation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..errors import GradinvError
from .observation import Observation, check_labels, check_normalization
from .protocol import Protocol, Tensors, batchnorm_statistics, bound_generator, client_update


@dataclass
class ClientRound:
    """What the client holds while it computes its update (defenses see it; attacks never do).

    params: trainable leaves (requires grad); x: the batch in model input space (normalised);
    generator: the round's seeded random source (defense noise, dropout-like randomness)."""

    model: nn.Module
    params: Tensors
    buffers: Tensors
    x: torch.Tensor
    targets: torch.Tensor
    protocol: Protocol
    generator: torch.Generator = field(default_factory=torch.Generator)

    @classmethod
    def start(
        cls,
        model: nn.Module,
        x: torch.Tensor,
        targets: torch.Tensor,
        protocol: Protocol | None = None,
        seed: int = 0,
    ) -> ClientRound:
        """A round on `model`'s current weights (copied, so the model is never touched)."""
        params = {
            k: v.detach().clone().requires_grad_(True)
            for k, v in model.named_parameters()
            if v.requires_grad
        }
        buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        generator = torch.Generator().manual_seed(int(seed))
        return cls(model, params, buffers, x, targets, protocol or Protocol(), generator)

    def update(self) -> Tensors:
        """The undefended update for this round (no graph kept)."""
        state = {k: v.clone() for k, v in self.buffers.items()}
        own = {k: v.clone() for k, v in self.model.named_buffers() if k not in state}
        with bound_generator(self.model, self.generator):
            out = client_update(
                self.model, self.params, {**own, **state}, self.x, self.targets, self.protocol
            )
        return {k: v.detach() for k, v in out.items()}


def defended_update(defenses: Sequence[Any], round: ClientRound) -> Tensors:
    """The update the client sends under `defenses` (applied in order; objects with
    `client_update(round)` and `apply(update, round)`, e.g. from gradinv.defenses): at most one
    defense may compute the whole update itself (DP-SGD), then every `apply` post-processes it."""
    with bound_generator(round.model, round.generator):
        custom = [(d, u) for d in defenses if (u := d.client_update(round)) is not None]
        if len(custom) > 1:
            names = ", ".join(d.name for d, _ in custom)
            raise GradinvError(f"defenses {names} each compute the whole update; use one of them")
        update = custom[0][1] if custom else round.update()
        update = {k: v.detach() for k, v in update.items()}
        for d in defenses:
            update = d.apply(update, round)
    return {k: v.detach() for k, v in update.items()}


def observe(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    protocol: Protocol | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    share_labels: bool = False,
    share_batch_size: bool = True,
    share_buffers: bool = True,
    train_mode: bool = True,
    model_spec: dict[str, Any] | None = None,
    share_batch_stats: bool = False,
    defenses: Sequence[Any] = (),
    seed: int = 0,
) -> Observation:
    """Run one client round on `images` (B, C, H, W) in [0,1] and return what the server sees.

    The client's model is left untouched (BatchNorm statistics included), and the Observation
    holds its own sealed copy of the architecture, never the client's module. `defenses` run on
    the client in order (objects with `client_update(round)` / `apply(update, round)` /
    `to_dict()`, e.g. from `gradinv.defenses`); their randomness comes from `seed`.
    `share_batch_stats` also reveals the batch's statistics at every BatchNorm input."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise GradinvError(
            f"images must be a non-empty (B, C, H, W) batch, got {tuple(images.shape)}"
        )
    if not images.is_floating_point() or not torch.isfinite(images).all():
        raise GradinvError("images must be finite floating-point values")
    if labels.shape != (images.shape[0],):
        raise GradinvError(f"{tuple(labels.shape)} labels for {images.shape[0]} images")
    protocol = protocol or Protocol()
    c = images.shape[1]
    mean = tuple(float(v) for v in mean) if mean is not None else (0.0,) * c
    std = tuple(float(v) for v in std) if std is not None else (1.0,) * c
    if len(mean) != c or len(std) != c:
        raise GradinvError(f"mean/std need {c} channel values, got {len(mean)}/{len(std)}")
    check_normalization(mean, std)
    p = next(model.parameters(), None)
    if p is None:
        raise GradinvError("the model has no parameters: nothing is shared, nothing to attack")
    images, labels = images.to(p.device, p.dtype), labels.to(p.device)
    params = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise GradinvError("the model has no trainable parameters: the update would be empty")
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise GradinvError(f"model tensor {k} contains NaN or Inf values")
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    num_classes = _num_outputs(model, images)
    check_labels(labels, num_classes)
    stats: Tensors = {}
    was_training = model.training
    model.train(train_mode)
    try:
        x = (images - _view(mean, images)) / _view(std, images)
        round_ = ClientRound(
            model, {k: v.clone().requires_grad_(True) for k, v in params.items()}, buffers, x,
            labels, protocol, torch.Generator(device="cpu").manual_seed(seed),
        )  # fmt: skip
        try:
            update = defended_update(list(defenses), round_)
        except (RuntimeError, ValueError) as exc:
            if isinstance(exc, GradinvError):
                raise
            mode = "train" if train_mode else "eval"
            raise GradinvError(
                f"the client's round fails on this batch of {images.shape[0]} in {mode} mode: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        if share_batch_stats:
            with torch.no_grad():
                stats = {
                    k: v.detach()
                    for k, v in batchnorm_statistics(model, params, buffers, x).items()
                }
    finally:
        model.train(was_training)
    privacy: dict[str, Any] = {}
    for d in defenses:
        privacy |= d.privacy(images.shape[0], protocol) if hasattr(d, "privacy") else {}
    return Observation.from_update(
        model,
        params,
        {k: v.detach() for k, v in update.items()},
        tuple(images.shape[1:]),  # type: ignore[arg-type]
        num_classes,
        buffers=buffers if share_buffers else {},
        protocol=protocol,
        mean=mean,
        std=std,
        batch_size=images.shape[0] if share_batch_size else None,
        labels=labels.clone() if share_labels else None,
        train_mode=train_mode,
        model_spec=model_spec,
        batch_stats=stats,
        defenses=[d.to_dict() for d in defenses],
        privacy=privacy,
    )


def _view(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, device=like.device, dtype=like.dtype).view(1, -1, 1, 1)


def _num_outputs(model: nn.Module, images: torch.Tensor) -> int:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(images[:1])
    except RuntimeError as exc:
        raise GradinvError(
            f"the model cannot take inputs of shape {tuple(images.shape[1:])}: {exc}".splitlines()[
                0
            ]
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise GradinvError(f"model output must be (batch, classes) logits, got {shape}")
    return out.shape[1]


def aggregate(observations: Sequence[Observation], secure: bool = False) -> Observation:
    """Server-side aggregation of K clients' updates, weighted by their batch sizes (FedAvg's rule).

    For FedSGD with known batch sizes this equals one client holding the union of the batches.
    With `secure=True` (secure aggregation) the server sees only the aggregate: no per-client
    batch sizes or labels (the total number of samples, which FedAvg's weighting needs, stays
    known when the clients report their sizes)."""
    if not observations:
        raise GradinvError("nothing to aggregate: no observations")
    sizes = [o.batch_size or 1 for o in observations]
    total = sum(sizes)
    first = observations[0]
    update = {
        k: sum(o.update[k] * (n / total) for o, n in zip(observations, sizes, strict=True))
        for k in first.update
    }
    labels = None
    if not secure and all(o.labels is not None for o in observations):
        labels = torch.cat([o.labels for o in observations])  # type: ignore[misc]
    known = all(o.batch_size is not None for o in observations)
    return Observation(
        **{
            **first.__dict__,
            "update": update,
            "labels": labels,
            "batch_size": total if known else None,
            "num_clients": sum(o.num_clients for o in observations),
            "batch_stats": {},  # per-client statistics do not describe the union
            "secure_aggregation": secure or first.secure_aggregation,
        }
    )
