"""R-GAP: recursive gradient attack on privacy (Zhu & Blaschko, ICLR 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..analysis.rank import chain, invertible, rank_of
from ..errors import GradinvError
from ..fl import Observation
from ._closed_form import batch_size, gradients, to_images
from .base import ATTACKS, Attack, Reconstruction


@ATTACKS.register(
    "rgap", "R-GAP (Zhu & Blaschko 2021): recursive closed form for CNNs, batch size 1"
)
@dataclass
class RGap(Attack):
    """Recursive closed-form inversion of one sample through a chain of conv/linear layers with
    invertible activations (e.g. cnn6: bias-free convs with LeakyReLU).

    The last linear layer's gradient k aᵀ is rank one: the label is the one class whose residual
    has the other sign, and the softmax fixes the scale (log k_c − log k_c' is linear in the
    logits). Then, layer by layer from the top, the layer's input x solves the least-squares system
    [K; C] x = [vec ∇W; σ⁻¹(a) − bias] — gradient constraints (the conv as a matrix) and forward
    constraints from the input already recovered above — and k moves down as (Cᵀ k) ⊙ σ′.
    With `rank_analysis=True`, `info["rank_deficits"]` gives each layer's deficit for this very
    sample (see `gradinv analyze` for the generic table). The result can seed
    an optimisation attack.

    Example::

        obs = observe(cnn6((3, 32, 32), 10), image, label)
        rec = RGap().reconstruct(obs)
        print(evaluate(rec.images, image)["psnr"])
    """

    name = "rgap"
    contract_model = "cnn6"
    contract_options = {}
    contract_batch_size = 1
    ridge: float = 1e-10  # relative Tikhonov term for rank-deficient layers (min-norm-like)
    rank_analysis: bool = False  # also compute each layer's rank deficit (an eigendecomposition)

    def check(self) -> None:
        if not 0 <= self.ridge < 1:
            raise GradinvError(f"rgap ridge must be in [0, 1), got {self.ridge}")

    def reconstruct(self, observation: Observation) -> Reconstruction:
        self.check()
        observation.validate()
        grads = gradients(observation, "rgap")
        b_size = batch_size(observation)
        if b_size != 1:
            raise GradinvError(f"rgap inverts a batch of one sample; this batch has {b_size}")
        layers = chain(observation.model, observation.input_shape)
        owner = {id(p): n for n, p in observation.model.named_parameters()}
        for layer in layers[:-1]:
            if not invertible(layer.activation):
                raise GradinvError(
                    "rgap needs invertible activations (LeakyReLU, sigmoid, tanh) between layers; "
                    f"layer {layer.name} is followed by {type(layer.activation).__name__}"
                )
        last = layers[-1]
        if not isinstance(last.module, nn.Linear) or last.activation is not None:
            raise GradinvError("rgap needs the model to end in a linear classifier")

        def tensors(layer: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
            mod = layer.module  # type: ignore[attr-defined]
            w_name = owner[id(mod.weight)]
            if w_name not in grads:
                raise GradinvError(f"rgap needs the update of {w_name}")
            bias = None
            if mod.bias is not None:
                bias = observation.parameters[owner[id(mod.bias)]].detach().double().cpu()
            weight = observation.parameters[w_name].detach().double().cpu()
            return weight, grads[w_name].cpu(), bias

        weight, grad_w, bias = tensors(last)
        k, a, label = self._top(weight, grad_w, bias, last, owner, grads)
        deficits = []
        x = a
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            weight, grad_w, bias = tensors(layer)
            if i < len(layers) - 1:
                # Move k down through the layer above, undo this layer's activation.
                above = layers[i + 1]
                w_above = tensors(above)[0]
                a_out = x.reshape(layer.out_shape)
                z = _inverse(layer.activation, a_out)
                k = above.input_gradient(k, w_above).reshape(layer.out_shape)
                k = k * _derivative(layer.activation, z)
                gram, g_scale, c_scale = layer.normal_system(k, weight)
                z_free = z - (bias.view(-1, *([1] * (z.dim() - 1))) if bias is not None else 0)
                rhs = layer.right_side(k, grad_w, z_free, weight, g_scale, c_scale)
                if self.rank_analysis:
                    deficits.append(layer.unknowns - rank_of(gram))
                x = _solve(gram, rhs, self.ridge)
            else:
                deficits.append(0)  # the rank-one classifier gradient determines its input
                x = a
        deficits.reverse()
        image = x.reshape(1, -1)
        return Reconstruction(
            images=to_images(observation, image),
            labels=torch.tensor([label]),
            info={
                "batch_size": 1,
                "label": label,
                "rank_deficits": deficits if self.rank_analysis else None,
                "full_rank": all(d == 0 for d in deficits) if self.rank_analysis else None,
            },
        )

    @staticmethod
    def _top(weight, grad_w, bias, last, owner, grads):  # noqa: ANN001, ANN205
        """k = ∂ℓ/∂logits and the classifier's input a from the rank-one ∇W = k aᵀ."""
        if bias is not None and owner[id(last.module.bias)] in grads:
            k = grads[owner[id(last.module.bias)]].cpu()
            a = (k @ grad_w) / (k @ k)
            return k, a, int(k.argmin())
        u, s, vh = torch.linalg.svd(grad_w, full_matrices=False)
        u, v, sigma = u[:, 0], vh[0], float(s[0])
        signs = torch.sign(u)
        pos, neg = int((signs > 0).sum()), int((signs < 0).sum())
        if neg != 1 and pos != 1:
            raise GradinvError(
                "rgap: the classifier's gradient is not one sample's (no odd-sign class)"
            )
        if pos == 1 and neg != 1:
            u, v = -u, -v  # the true class has a negative residual
        label = int(u.argmin())
        others = torch.arange(len(u)) != label
        logits_dir = weight @ v
        # log u_c = t·(W v)_c + const over the classes c ≠ y (softmax), least squares in (t, const).
        design = torch.stack([logits_dir[others], torch.ones(int(others.sum()), dtype=u.dtype)], 1)
        t = torch.linalg.lstsq(design, torch.log(u[others].clamp_min(1e-300))[:, None]).solution
        t = float(t[0, 0])
        if t == 0:
            raise GradinvError("rgap: cannot fix the scale of the classifier's input")
        a = t * v
        k = sigma * u / t
        return k, a, label


def _inverse(activation: nn.Module | None, a: torch.Tensor) -> torch.Tensor:
    if activation is None or isinstance(activation, nn.Identity):
        return a
    if isinstance(activation, nn.LeakyReLU):
        return torch.where(a >= 0, a, a / activation.negative_slope)
    if isinstance(activation, nn.Sigmoid):
        a = a.clamp(1e-12, 1 - 1e-12)
        return torch.log(a) - torch.log1p(-a)
    if isinstance(activation, nn.Tanh):
        return torch.atanh(a.clamp(-1 + 1e-12, 1 - 1e-12))
    raise GradinvError(f"rgap cannot invert {type(activation).__name__}")


def _derivative(activation: nn.Module | None, z: torch.Tensor) -> torch.Tensor:
    if activation is None or isinstance(activation, nn.Identity):
        return torch.ones_like(z)
    if isinstance(activation, nn.LeakyReLU):
        return torch.where(
            z >= 0, torch.ones_like(z), torch.full_like(z, activation.negative_slope)
        )
    if isinstance(activation, nn.Sigmoid):
        s = torch.sigmoid(z)
        return s * (1 - s)
    if isinstance(activation, nn.Tanh):
        return 1 - torch.tanh(z) ** 2
    raise GradinvError(f"rgap cannot differentiate {type(activation).__name__}")


def _solve(gram: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """Least squares through the normal equations, with a tiny ridge for rank-deficient layers."""
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    lam = ridge * float(gram.diagonal().mean())
    chol, info = torch.linalg.cholesky_ex(gram + lam * eye)
    if int(info) != 0:
        return torch.linalg.lstsq(gram + lam * eye, rhs[:, None]).solution[:, 0]
    return torch.cholesky_solve(rhs[:, None], chol)[:, 0]
