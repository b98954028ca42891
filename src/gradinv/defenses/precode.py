"""PRECODE (Scheliga et al., WACV 2022): a variational bottleneck inserted before the classifier.

The server knows the wrapped architecture (it is part of the deployment): an attacker builds the
same wrapper and sees the bottleneck's parameters and their gradients, but not the noise ε.
The client's loss is the protocol's loss + β·KL (gradinv.fl.training_loss collects it), which an
attacker simulating the wrapped model includes too; only the noise draws ε stay secret (an
attacker's simulation uses z = μ)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..fl import LossTerm, Stochastic
from ..options import option
from ._layers import last_linear, replace_module
from .base import Defense, randn_like, register


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(N(μ, σ²) ‖ N(0, 1)) = ½ Σ (μ² + σ² − log σ² − 1)."""
    kl = 0.5 * (mu**2 + logvar.exp() - logvar - 1)
    return kl.flatten(1).sum(dim=1).mean()


class VariationalBottleneck(Stochastic, LossTerm):
    """h -> encoder -> (μ, log σ²) -> z = μ + σ·ε (train mode; z = μ in eval mode) -> decoder;
    adds β·KL to the client's training loss (gradinv.fl.training_loss)."""

    def __init__(self, features: int, latent: int, beta: float) -> None:
        super().__init__()
        self.encoder = nn.Linear(features, 2 * latent)
        self.decoder = nn.Linear(latent, features)
        self.beta = beta

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(h).chunk(2, dim=-1)
        self.add_penalty(self.beta * kl_divergence(mu, logvar))
        noisy = self.training and self.sample
        z = mu + (0.5 * logvar).exp() * randn_like(mu, self.generator) if noisy else mu
        return self.decoder(z)


class Precoded(nn.Module):
    """The original classifier preceded by the bottleneck."""

    def __init__(self, bottleneck: VariationalBottleneck, classifier: nn.Linear) -> None:
        super().__init__()
        self.bottleneck = bottleneck
        self.classifier = classifier

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bottleneck(h))


@register
@dataclass
class Precode(Defense):
    """PRECODE: a variational bottleneck before the last linear layer, trained with loss + β·KL.

    encoder -> (μ, log σ²); z = μ + σ·ε with ε from the round's generator; decoder -> classifier."""

    name = "precode"
    latent: int = option(256, "size of the bottleneck's latent code z", low=1)
    beta: float = option(1e-3, "weight β of the KL term added to the loss", low=0)
    seed: int = option(0, "seed of the bottleneck's weight initialisation", low=0)

    def layers(self, names: list[str]) -> list[str]:
        """PRECODE's known break: compare only the layers before the bottleneck (the noise makes
        the bottleneck's and the classifier's gradients unpredictable)."""
        keep = [n for n in names if ".bottleneck." not in f".{n}" and ".classifier." not in f".{n}"]
        return keep or names

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """A copy of `model` with the bottleneck inserted (the input model is left untouched);
        the classifier keeps its weights and is renamed `<name>.classifier`."""
        wrapped = copy.deepcopy(model)
        name, linear = last_linear(wrapped, "precode")
        # Seeded initialisation without disturbing the caller's global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            vb = VariationalBottleneck(linear.in_features, self.latent, self.beta)
        vb = vb.to(linear.weight.device, linear.weight.dtype)
        replace_module(wrapped, name, Precoded(vb, linear))
        return wrapped
