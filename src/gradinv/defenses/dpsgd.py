"""DP-SGD (Abadi et al. 2016) through Opacus: per-sample clipping to C, Gaussian noise
N(0, σ²C²) on the sum, division by the batch size; ε from Opacus' RDP accountant."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..errors import GradinvError
from ..fl import bound_generator, training_loss
from ..fl.protocol import Protocol
from ..options import option
from .base import ClientRound, Defense, Tensors, register


def _opacus() -> Any:
    try:
        import opacus
        import opacus.accountants
        import opacus.optimizers
        import opacus.validators
    except ImportError:
        raise GradinvError("dpsgd needs Opacus: pip install 'gradinv[opacus]'") from None
    return opacus


def _dp_copy(round: ClientRound) -> nn.Module:
    """A copy of the client's model holding the round's weights, checked by Opacus' validator."""
    opacus = _opacus()
    model = copy.deepcopy(round.model)
    errors = opacus.validators.ModuleValidator.validate(model, strict=False)
    if errors:
        first = str(errors[0]).strip().splitlines()[0]
        hint = (
            "; replace BatchNorm by GroupNorm (opacus.validators.ModuleValidator.fix(model))"
            if any("BatchNorm" in str(e) for e in errors) else ""
        )  # fmt: skip
        raise GradinvError(f"dpsgd: Opacus cannot compute per-sample gradients here: {first}{hint}")
    named = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for k, p in named.items():
            p.requires_grad_(k in round.params)
            if k in round.params:
                p.copy_(round.params[k])
        for k, v in round.buffers.items():
            if k in buffers:
                buffers[k].copy_(v)
    return model


@register
@dataclass
class DPSGD(Defense):
    """DP-SGD via Opacus: per-sample clipping to C and Gaussian noise σ·C on the summed gradient.

    The noisy sum is divided by the batch size; FedSGD sends one such gradient, FedAvg takes one
    such step per local step and sends the weight delta."""

    name = "dpsgd"
    clip: float = option(1.0, "per-sample l2 bound C on the gradient", low=0, low_open=True)
    noise: float = option(1.0, "noise multiplier σ (noise std σ·C on the summed gradient)", low=0)
    delta: float = option(1e-5, "δ of the (ε, δ) guarantee", low=0, high=1, low_open=True,
                          high_open=True)  # fmt: skip
    sample_rate: float = option(
        1.0,
        "probability q that a record of the client's data is in the batch (accounting only)",
        low=0,
        high=1,
        low_open=True,
    )

    def client_update(self, round: ClientRound) -> Tensors | None:
        opacus = _opacus()
        model = _dp_copy(round)
        names = list(round.params)
        named = dict(model.named_parameters())
        params = [named[k] for k in names]
        start = [p.detach().clone() for p in params]
        protocol = round.protocol
        n = round.x.shape[0]
        step = n if protocol.kind == "fedsgd" else (protocol.local_batch_size or n)
        epochs = 1 if protocol.kind == "fedsgd" else protocol.local_epochs
        with warnings.catch_warnings(), bound_generator(model, round.generator):
            # Opacus' hooks warn when the input does not require grad; harmless here.
            warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
            gsm = opacus.GradSampleModule(model, loss_reduction="mean")
            try:
                for _ in range(epochs):
                    for s in range(0, n, step):
                        xb, yb = round.x[s : s + step], round.targets[s : s + step]
                        grads = self._dp_gradient(
                            gsm, params, xb, yb, round.generator, protocol.loss_fn
                        )
                        if protocol.kind == "fedsgd":
                            return dict(zip(names, grads, strict=True))
                        with torch.no_grad():
                            for p, g in zip(params, grads, strict=True):
                                p -= protocol.local_lr * g
            finally:
                gsm._close()
        return {k: (p.detach() - p0) for k, p, p0 in zip(names, params, start, strict=True)}

    def _dp_gradient(
        self,
        gsm: nn.Module,
        params: list[torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> list[torch.Tensor]:
        """One DP aggregated gradient: Opacus' pre_step clips, sums, adds noise and divides by
        the batch size without touching the weights (lr 0, no step)."""
        opacus = _opacus()
        opt = opacus.optimizers.DPOptimizer(
            torch.optim.SGD(params, lr=0.0),
            noise_multiplier=self.noise,
            max_grad_norm=self.clip,
            expected_batch_size=x.shape[0],
            generator=generator,
        )
        opt.zero_grad(set_to_none=True)
        training_loss(gsm, lambda: gsm(x), y, loss).backward()  # + PRECODE's β·KL if present
        opt.pre_step()
        grads = [p.grad.detach().clone() for p in params]
        opt.zero_grad(set_to_none=True)
        return grads

    def privacy(self, batch_size: int, protocol: Protocol, rounds: int = 1) -> dict[str, Any]:
        """(ε, δ) of `rounds` client rounds from Opacus' RDP accountant.

        Within a round each record is in exactly one minibatch per local epoch, so E local epochs
        compose E Gaussian mechanisms on it (disjoint minibatches compose in parallel); E Gaussians
        of multiplier σ are one of multiplier σ/√E, subsampled once per round with rate q."""
        opacus = _opacus()
        epochs = protocol.local_epochs if protocol.kind == "fedavg" else 1
        per_epoch = math.ceil(batch_size / (protocol.local_batch_size or batch_size))
        steps = epochs * per_epoch if protocol.kind == "fedavg" else 1
        if self.noise == 0:
            epsilon = math.inf
        else:
            accountant = opacus.accountants.RDPAccountant()
            for _ in range(rounds):
                accountant.step(
                    noise_multiplier=self.noise / math.sqrt(epochs), sample_rate=self.sample_rate
                )
            # Opacus' default orders stop at 63, too few for small σ at q = 1 (its "optimal order
            # is the largest alpha" warning): larger orders only tighten the bound.
            alphas = list(accountant.DEFAULT_ALPHAS) + [80, 100, 128, 192, 256, 512, 1024]
            epsilon = float(accountant.get_epsilon(self.delta, alphas=alphas))
        return {
            "epsilon": epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise,
            "sample_rate": self.sample_rate,
            "rounds": rounds,
            "steps": steps * rounds,
            "accountant": "rdp (opacus)",
        }
