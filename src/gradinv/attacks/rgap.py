"""R-GAP: recursive gradient attack on privacy (Zhu & Blaschko, ICLR 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from scipy.linalg import solve_triangular

from ..analysis.rank import chain, invertible, pivoted_cholesky
from ..errors import GradinvError
from ..fl import Observation
from ..fl.protocol import simulate_update
from ..options import option
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
    The result can seed an optimisation attack.

    Whether the result can be exact is always reported, never left to the user to ask:

    - `info["rank_deficits"]`: per layer (input first), unknowns − rank of this sample's system,
      from the pivoted Cholesky that also solves it (`rank_analysis`, layers with at most
      `rank_limit` unknowns), else None. Independently of that, a count of equations per input
      channel (`LayerSystem.rank_bound`) proves some layers deficient for free.
    - `info["full_rank"]`: False when a layer is (provably) deficient, True when every deficit
      was computed and is 0, None only when some rank is unknown.
    - `info["gradient_residual"]`: ‖g(x̂, label) − g‖ / ‖g‖, the update the reconstruction
      would produce under the observation's protocol, compared with the observed one.
    - `info["exact"]`: full rank and a residual below `exact_residual`. Otherwise
      `info["warning"]` says why, in one line.

    Ctrl-C stops the recursion: a blank image, `info["interrupted"]` True.

    Example::

        obs = observe(cnn6((3, 32, 32), 10), image, label)
        rec = RGap().reconstruct(obs)
        print(evaluate(rec.images, image)["psnr"])
    """

    name = "rgap"
    contract_model = "cnn6"
    contract_options = {}
    contract_batch_size = 1
    ridge: float = option(
        1e-10, "relative Tikhonov term for rank-deficient layers (min-norm-like)",
        low=0, high=1, high_open=True,
    )  # fmt: skip
    rank_analysis: bool = option(
        True, "each layer's rank deficit (the pivoted Cholesky that also solves it)"
    )
    rank_limit: int = option(5000, "... for layers with at most this many unknowns", low=0)
    exact_residual: float = option(
        1e-3, "largest relative gradient residual of a result reported exact",
        low=0, high=1, low_open=True, high_open=True,
    )  # fmt: skip

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
        n_layers = len(layers)
        # Per layer (input first): exact deficit or None; proven lower bound from counting.
        deficits: list[int | None] = [None] * (n_layers - 1) + [0]  # rank-one top: determined
        bounds = [layer.unknowns - layer.rank_bound() for layer in layers[:-1]] + [0]
        x, interrupted = a, False
        try:
            for i in range(n_layers - 2, -1, -1):
                layer, above = layers[i], layers[i + 1]
                weight, grad_w, bias = tensors(layer)
                # Move k down through the layer above, undo this layer's activation.
                z = _inverse(layer.activation, x.reshape(layer.out_shape))
                k = above.input_gradient(k, tensors(above)[0]).reshape(layer.out_shape)
                k = k * _derivative(layer.activation, z)
                gram, g_scale, c_scale = layer.normal_system(k, weight)
                z_free = z - (bias.view(-1, *([1] * (z.dim() - 1))) if bias is not None else 0)
                rhs = layer.right_side(k, grad_w, z_free, weight, g_scale, c_scale)
                if self.rank_analysis and layer.unknowns <= self.rank_limit:
                    rank, x = _solve_ranked(gram, rhs, self.ridge)
                    deficits[i] = layer.unknowns - rank
                else:
                    x = _solve(gram, rhs, self.ridge)
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:  # the input layer was not reached: a blank (mean) image
            x = torch.zeros(layers[0].unknowns, dtype=torch.float64)
        image = to_images(observation, x.reshape(1, -1))
        info = _verdict(observation, image, label, layers, deficits, bounds, self.exact_residual)
        if interrupted:
            info |= {"interrupted": True, "exact": False}
            info["warning"] = "rgap: interrupted before the input layer; the image is blank"
        return Reconstruction(images=image.cpu(), labels=torch.tensor([label]), info=info)

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


def _verdict(
    observation: Observation, image: torch.Tensor, label: int, layers: list,
    deficits: list[int | None], bounds: list[int], limit: float,
) -> dict:  # fmt: skip
    """rank_deficits, full_rank, gradient_residual, exact, and a one-line warning when not exact."""
    proven = [
        i for i, (d, b) in enumerate(zip(deficits, bounds, strict=True)) if (d or 0) > 0 or b > 0
    ]
    if proven:
        full_rank = False
    else:
        full_rank = True if all(d == 0 for d in deficits) else None
    residual = _gradient_residual(observation, image, label)
    info = {
        "batch_size": 1,
        "label": label,
        "rank_deficits": deficits,
        "full_rank": full_rank,
        "gradient_residual": float(f"{residual:.3g}"),
        "exact": bool(full_rank is True and residual <= limit),
        "interrupted": False,
    }
    if proven:
        i = proven[0]
        d = deficits[i] if deficits[i] is not None else f">= {bounds[i]}"
        info["warning"] = (
            f"rgap: layer {layers[i].name} is rank deficient (deficit {d} of "
            f"{layers[i].unknowns} unknowns): this reconstruction cannot be exact"
        )
    elif full_rank is None:
        i = deficits.index(None)
        info["warning"] = (
            f"rgap: rank of layer {layers[i].name} not computed ({layers[i].unknowns} unknowns; "
            f"rank_limit/rank_analysis); gradient residual {residual:.2g}: exactness unknown"
        )
    elif not info["exact"]:
        info["warning"] = (
            f"rgap: the reconstruction's gradient misses the update by {residual:.2g} (relative, "
            f"limit {limit:g}): it is not exact"
        )
    return info


def _gradient_residual(observation: Observation, image: torch.Tensor, label: int) -> float:
    """‖update(x̂, label) − update‖ / ‖update‖ under the observation's protocol, in float64."""
    x = observation.normalize(image.to(observation.device, observation.dtype)).double()
    params = {
        k: v.detach().double().requires_grad_(True) for k, v in observation.parameters.items()
    }
    model = observation.model
    buffers = {k: v.double() if v.is_floating_point() else v for k, v in model.named_buffers()}
    buffers |= {
        k: v.double() if v.is_floating_point() else v for k, v in observation.buffers.items()
    }
    was_training = model.training
    model.train(observation.train_mode)
    try:
        target = torch.tensor([label], device=x.device)
        sim = simulate_update(model, params, buffers, x, target, observation.protocol)
    finally:
        model.train(was_training)
    num = sum(float((sim[n] - g.double()).pow(2).sum()) for n, g in observation.update.items())
    den = sum(float(g.double().pow(2).sum()) for g in observation.update.values())
    return (num / den) ** 0.5 if den > 0 else float("inf")


def _solve_ranked(gram: torch.Tensor, rhs: torch.Tensor, ridge: float) -> tuple[int, torch.Tensor]:
    """The system's numerical rank and its solution: through the pivoted Cholesky factor when
    the rank is full, else the ridge solve."""
    rank, low, piv = pivoted_cholesky(gram)
    if rank < gram.shape[0]:
        return rank, _solve(gram, rhs, ridge)
    b = rhs.detach().double().cpu().numpy()[piv]
    y = solve_triangular(low, b, lower=True)
    out = np.empty_like(b)
    out[piv] = solve_triangular(low.T, y, lower=False)
    return rank, torch.from_numpy(out).to(rhs.dtype)


def _solve(gram: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """Least squares through the normal equations, with a tiny ridge for rank-deficient layers."""
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    lam = ridge * float(gram.diagonal().mean())
    chol, info = torch.linalg.cholesky_ex(gram + lam * eye)
    if int(info) != 0:
        return torch.linalg.lstsq(gram + lam * eye, rhs[:, None]).solution[:, 0]
    return torch.cholesky_solve(rhs[:, None], chol)[:, 0]
