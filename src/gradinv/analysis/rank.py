"""R-GAP's rank analysis (Zhu & Blaschko, ICLR 2021): per layer, how many unknowns the layer's input
has, how many linear equations the gradient (K x = vec ∇W) and the forward pass (C x = z) give, and
the rank of the stacked system [K; C]. A positive deficit (unknowns − rank) means the layer's input is
not determined by the update: recovery through that layer fails (information discard)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.linalg import lapack

from ..errors import GradinvError

ACTIVATIONS: dict[type, bool] = {  # elementwise activation -> invertible
    nn.LeakyReLU: True,
    nn.Sigmoid: True,
    nn.Tanh: True,
    nn.Identity: True,
    nn.ReLU: False,
    nn.GELU: False,
}


@dataclass
class LayerRank:
    """One row of the rank table."""

    layer: str
    kind: str
    input_shape: list[int]
    unknowns: int
    gradient_equations: int
    forward_equations: int
    equations: int
    rank: int
    deficit: int
    invertible_activation: bool  # whether the activation before this layer's output can be undone

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayerSystem:
    """A conv/linear layer of a sequential chain, seen as linear maps of its input x (one sample).

    module: the layer; name: its name; in_shape: input shape without batch; activation: the
    elementwise module applied to its output (None at the end); flatten_before: whether a flatten
    sits between the previous layer's activation and this layer."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    activation: nn.Module | None

    @property
    def unknowns(self) -> int:
        return math.prod(self.in_shape)

    def forward_matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """C (out × in) with z = C x + bias."""
        n = self.unknowns
        eye = torch.eye(n, dtype=weight.dtype).reshape(n, *self.in_shape)
        return self.apply(eye, weight).reshape(n, -1).T

    def apply(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        m = self.module
        if isinstance(m, nn.Conv2d):
            return F.conv2d(x, weight, None, m.stride, m.padding)
        return x.flatten(1) @ weight.T

    def input_gradient(self, k: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """∂ℓ/∂x from k = ∂ℓ/∂z (one sample, no batch dim)."""
        m = self.module
        if isinstance(m, nn.Conv2d):
            return torch.nn.grad.conv2d_input(
                (1, *self.in_shape), weight, k[None], m.stride, m.padding
            )[0]
        return (weight.T @ k.flatten()).reshape(self.in_shape)

    def gradient_block(self, k: torch.Tensor) -> torch.Tensor:
        """For a conv: K0 (O·kh·kw × H·W), the gradient equations of one input channel (the same for
        every channel). For a linear layer: the vector k (∇W = k xᵀ)."""
        m = self.module
        if isinstance(m, nn.Conv2d):
            _, h, w = self.in_shape
            eye = torch.eye(h * w, dtype=k.dtype).reshape(h * w, 1, h, w)
            patches = F.unfold(eye, m.kernel_size, padding=m.padding, stride=m.stride)
            block = torch.einsum("ol,nql->oqn", k.reshape(k.shape[0], -1), patches)
            return block.reshape(-1, h * w)
        return k.flatten()

    def normal_system(
        self, k: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, float, float]:
        """AᵀA of the stacked, block-normalised system [K/‖K‖; C/‖C‖] and the two scales."""
        c = self.forward_matrix(weight)
        c_scale = float(c.norm()) or 1.0
        g = self.gradient_block(k)
        g_scale = float(g.norm()) or 1.0
        gram = (c.T @ c) / c_scale**2
        if isinstance(self.module, nn.Conv2d):
            block = (g.T @ g) / g_scale**2
            gram = gram + torch.block_diag(*([block] * self.in_shape[0]))
        else:
            gram = gram + torch.eye(self.unknowns, dtype=gram.dtype) * (g @ g) / g_scale**2
        return gram, g_scale, c_scale

    def right_side(
        self, k: torch.Tensor, grad_w: torch.Tensor, z: torch.Tensor, weight: torch.Tensor,
        g_scale: float, c_scale: float,
    ) -> torch.Tensor:  # fmt: skip
        """Aᵀ b for b = [vec ∇W / ‖K‖; z / ‖C‖]."""
        c = self.forward_matrix(weight)
        rhs = c.T @ z.flatten() / c_scale**2
        g = self.gradient_block(k)
        if isinstance(self.module, nn.Conv2d):
            o, ch = grad_w.shape[:2]
            per_channel = grad_w.reshape(o, ch, -1).permute(1, 0, 2).reshape(ch, -1)
            rhs = rhs + (per_channel @ g).flatten() / g_scale**2
        else:
            rhs = rhs + (g @ grad_w) / g_scale**2
        return rhs

    def gradient_equations(self) -> int:
        return int(self.module.weight.numel())

    def rank_bound(self) -> int:
        """An upper bound on the rank of [K; C] without forming it: per input channel the
        gradient block K0 (O·kh·kw × H·W) has rank ≤ min of its sides, C has ≤ its rows. A bound
        below the unknowns proves the layer deficient. A linear layer's ∇W = k xᵀ fixes x."""
        m, n = self.module, self.unknowns
        if not isinstance(m, nn.Conv2d):
            return n
        out_ch, in_ch, kh, kw = m.weight.shape
        per_channel = min(out_ch * kh * kw, self.in_shape[1] * self.in_shape[2])
        return min(n, in_ch * per_channel + min(self.forward_equations(), n))

    def forward_equations(self) -> int:
        return math.prod(self.out_shape)


def chain(model: nn.Module, in_shape: tuple[int, int, int]) -> list[LayerSystem]:
    """The model's conv/linear layers as a sequential chain, or a GradinvError naming the first
    module the analysis cannot handle (BatchNorm, pooling, residual connections, ...)."""
    names = {id(m): n for n, m in model.named_modules()}
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: calls.append((mod, i[0], o)))
        for m in model.modules()
        if not list(m.children())
    ]
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.randn(1, *in_shape, generator=torch.Generator().manual_seed(0)).to(p))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    layers: list[LayerSystem] = []
    previous = None
    for module, inp, out in calls:
        if previous is not None and not torch.equal(inp.flatten(), previous.flatten()):
            raise GradinvError(
                f"rank analysis needs a sequential chain; {names.get(id(module), '?')} "
                f"({type(module).__name__}) does not read the previous module's output"
            )
        previous = out
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Conv2d) and (
                module.groups != 1
                or module.dilation != (1, 1)
                or module.padding_mode != "zeros"
                or isinstance(module.padding, str)
            ):
                raise GradinvError(
                    "rank analysis supports plain convolutions (groups=1, dilation=1, zero padding)"
                )
            layers.append(
                LayerSystem(
                    names.get(id(module), "?"), module, tuple(inp.shape[1:]),
                    tuple(out.shape[1:]), None,
                )
            )  # fmt: skip
        elif isinstance(module, nn.Flatten):
            continue
        elif type(module) in ACTIVATIONS:
            if not layers or layers[-1].activation is not None:
                raise GradinvError("rank analysis: an activation must follow a conv/linear layer")
            layers[-1].activation = module
        else:
            raise GradinvError(
                f"rank analysis supports Conv2d, Linear, Flatten and elementwise activations; "
                f"{names.get(id(module), '?')} is {type(module).__name__}"
            )
    if not layers:
        raise GradinvError("rank analysis: the model has no conv or linear layer")
    return layers


def invertible(activation: nn.Module | None) -> bool:
    if activation is None:
        return True
    if isinstance(activation, nn.LeakyReLU):
        return activation.negative_slope > 0
    return ACTIVATIONS.get(type(activation), False)


def rank_of(gram: torch.Tensor, rtol: float = 1e-10) -> int:
    """Numerical rank of a PSD normal matrix AᵀA (eigenvalues are squared singular values)."""
    ev = torch.linalg.eigvalsh(gram)
    top = float(ev.max())
    return int((ev > top * rtol).sum()) if top > 0 else 0


def pivoted_cholesky(gram: torch.Tensor, rtol: float = 1e-10) -> tuple[int, np.ndarray, np.ndarray]:
    """Numerical rank of a PSD normal matrix and its pivoted Cholesky factor (LAPACK pstrf):
    Pᵀ G P = L Lᵀ with L's first `rank` columns. It agrees with `rank_of` (eigenvalues above
    rtol·max) on every layer we checked, at the cost of one Cholesky: 2–4× cheaper than the
    eigendecomposition, and the factor solves the system when the rank is full."""
    g = gram.detach().double().cpu().numpy()
    top = float(np.max(np.diag(g))) if g.size else 0.0
    if top <= 0:
        return 0, np.zeros_like(g), np.arange(len(g))
    low, piv, rank, info = lapack.dpstrf(g, lower=1, tol=rtol * top)
    if info < 0:
        raise GradinvError(f"rank analysis: pivoted Cholesky failed (LAPACK info {info})")
    return int(rank), np.tril(low), piv - 1


def rank_table(model: nn.Module, in_shape: tuple[int, int, int], seed: int = 0) -> list[LayerRank]:
    """The rank analysis for one sample: the model's weights, a generic (random) k = ∂ℓ/∂z per layer.
    Generic ranks are upper bounds of what a real sample's gradient gives."""
    layers = chain(model, in_shape)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for i, layer in enumerate(layers):
        weight = layer.module.weight.detach().double().cpu()
        k = torch.randn(layer.out_shape, generator=gen, dtype=torch.float64)
        gram, _, _ = layer.normal_system(k, weight)
        r = rank_of(gram)
        grad_eq, fwd_eq = layer.gradient_equations(), layer.forward_equations()
        rows.append(
            LayerRank(
                layer=layer.name, kind=type(layer.module).__name__,
                input_shape=list(layer.in_shape), unknowns=layer.unknowns,
                gradient_equations=grad_eq, forward_equations=fwd_eq, equations=grad_eq + fwd_eq,
                rank=r, deficit=layer.unknowns - r,
                invertible_activation=invertible(layers[i - 1].activation) if i else True,
            )
        )  # fmt: skip
    return rows
