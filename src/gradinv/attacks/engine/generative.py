"""Parametrisations through a generator G (output in [-1, 1], mapped to [0, 1] by (x + 1) / 2):
its latent z (GIAS stage 1, GGL), per-image copies of its weights (GIAS stage 2, deep image
prior), or the input of one of its stages with an l1-ball constraint (GIFD)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, vmap

from ...errors import GradinvError
from ...fl import Observation
from .parametrisation import Parametrisation


def check_generator(generator: nn.Module, observation: Observation) -> None:
    shape = tuple(getattr(generator, "output_shape", ()))
    if shape != tuple(observation.input_shape):
        raise GradinvError(
            f"the generator makes {shape} images but the observed model takes "
            f"{tuple(observation.input_shape)}: train one for this data (gradinv train-generator "
            "--channels C --image-size S)"
        )


def _frozen(generator: nn.Module, observation: Observation) -> nn.Module:
    g = generator.to(observation.device, observation.dtype).eval()
    for p in g.parameters():
        p.requires_grad_(False)
    return g


class _ToInputs:
    """[-1, 1] generator output -> the observed model's input space."""

    def __init__(self, observation: Observation) -> None:
        self.obs = observation

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        return self.obs.normalize((out + 1) / 2)


class Latent(Parametrisation):
    """x = G(z) with z (one latent per image) optimised and G frozen. `renormalize` keeps each z at
    its initial norm after every step (GIFD's first round); `start` (N, d) starts trial 0.
    Variables given to the engine directly (`optimise(..., initial=...)`) are not renormalised."""

    def __init__(
        self,
        observation: Observation,
        generator: nn.Module,
        count: int,
        renormalize: bool = False,
        start: torch.Tensor | None = None,
    ) -> None:
        check_generator(generator, observation)
        self.obs, self.g, self.count = observation, _frozen(generator, observation), count
        self.renormalize, self.start = renormalize, start
        self.to_inputs = _ToInputs(observation)
        # each trial's starting norms, recorded when it is drawn; the engine stacks trials in the
        # order it draws them, so `project` reads the last R recorded (a NaN retry redraws some)
        self._norms: list[torch.Tensor] = []

    def initial(self, generator: torch.Generator, trial: int) -> list[torch.Tensor]:
        z = torch.randn((self.count, self.g.latent_dim), generator=generator, dtype=torch.float64)
        if trial == 0 and self.start is not None:
            z = self.start.double().cpu()
        z = z.to(self.obs.device, self.obs.dtype)
        self._norms.append(z.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        return [z]

    def images(self, z: torch.Tensor) -> torch.Tensor:
        r, n = z.shape[:2]
        out = self.g(z.reshape(r * n, -1))
        return out.reshape(r, n, *out.shape[1:])

    def inputs(self, variables: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.to_inputs(self.images(variables[0]))

    def project(self, variables: Sequence[torch.Tensor]) -> None:
        if not self.renormalize:
            return
        z = variables[0]
        with torch.no_grad():
            norm = z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            start = torch.stack(self._norms[-z.shape[0] :])  # (R, N, 1): the start's norms
            z.mul_(start / norm)


class Feature(Parametrisation):
    """GIFD's variable: the input h of stage k, stages k..N run on it, and after every step
    h − h⁰ is projected onto the l1 ball of radius ρ·‖h⁰‖₁ per image (radii relative to the
    feature's size, since absolute radii depend on the generator)."""

    def __init__(
        self, observation: Observation, generator: nn.Module, stage: int, start: torch.Tensor,
        radius: float,
    ) -> None:  # fmt: skip
        check_generator(generator, observation)
        self.obs, self.g, self.stage = observation, _frozen(generator, observation), stage
        self.start = start.detach().to(observation.device, observation.dtype)  # (N, ...)
        flat = self.start.flatten(1)
        self.radius = radius * flat.abs().sum(1)  # (N,)
        self.to_inputs = _ToInputs(observation)

    def initial(self, generator: torch.Generator, trial: int) -> list[torch.Tensor]:
        return [self.start.clone()]

    def inputs(self, variables: Sequence[torch.Tensor]) -> torch.Tensor:
        h = variables[0]
        r, n = h.shape[:2]
        out = self.g.from_stage(h.reshape(r * n, *h.shape[2:]), self.stage)
        return self.to_inputs(out.reshape(r, n, *out.shape[1:]))

    def project(self, variables: Sequence[torch.Tensor]) -> None:
        h = variables[0]
        with torch.no_grad():
            r, n = h.shape[:2]
            delta = (h - self.start).reshape(r * n, -1)
            radius = self.radius.repeat(r)
            h.copy_(
                self.start + project_l1_ball(delta, radius).reshape(h.shape[0], *self.start.shape)
            )


class GeneratorWeights(Parametrisation):
    """One copy of the generator's weights per image (GIAS stage 2) — or, from a freshly built
    generator, a deep image prior: the architecture alone is the prior. Inputs z are fixed."""

    def __init__(
        self, observation: Observation, generator: nn.Module, z: torch.Tensor,
        random_init: bool = False,
    ) -> None:  # fmt: skip
        check_generator(generator, observation)
        self.obs, self.g = observation, _frozen(generator, observation)
        self.z = z.detach().to(observation.device, observation.dtype)  # (N, d): one per image
        self.count = self.z.shape[0]
        self.names = [n for n, _ in self.g.named_parameters()]
        self.buffers = {k: v.detach() for k, v in self.g.named_buffers()}
        if random_init:  # a trained generator's BatchNorm statistics are data too: reset them
            self.buffers = {k: _fresh_buffer(k, v) for k, v in self.buffers.items()}
        self.random_init = random_init
        self.to_inputs = _ToInputs(observation)

    def initial(self, generator: torch.Generator, trial: int) -> list[torch.Tensor]:
        out = []
        for name, p in self.g.named_parameters():
            value = p.detach()
            if self.random_init:  # DCGAN's initialisation, drawn per trial: nothing trained kept
                value = _dcgan_init(name, p, generator)
            out.append(value.unsqueeze(0).repeat(self.count, *([1] * p.ndim)).clone())
        return out

    def _one(self, params: tuple[torch.Tensor, ...], z: torch.Tensor) -> torch.Tensor:
        state = {**self.buffers, **dict(zip(self.names, params, strict=True))}
        return functional_call(self.g, state, (z[None],))[0]

    def inputs(self, variables: Sequence[torch.Tensor]) -> torch.Tensor:
        r, n = variables[0].shape[:2]
        flat = tuple(v.reshape(r * n, *v.shape[2:]) for v in variables)
        z = self.z.repeat(r, 1)
        out = vmap(self._one)(flat, z)
        return self.to_inputs(out.reshape(r, n, *out.shape[1:]))


def _dcgan_init(name: str, p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Weights N(0, 0.02); BatchNorm scales (1-d `weight`) N(1, 0.02); biases 0."""
    if name.endswith("bias"):
        return torch.zeros_like(p)
    value = torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.02
    if p.ndim == 1:
        value = value + 1.0
    return value.to(p.device, p.dtype)


def _fresh_buffer(name: str, value: torch.Tensor) -> torch.Tensor:
    """A BatchNorm buffer as a new module has it: mean 0, variance 1, no batches seen."""
    if name.endswith("running_var"):
        return torch.ones_like(value)
    return torch.zeros_like(value)


def latent_norm_term(weight: float):  # noqa: ANN201 - an objective Term
    """weight · Σ_images (‖z_i‖/√d − 1)² per trial: keeps latents near the shell where a
    N(0, I)-trained generator saw them (GIAS's optional latent penalty)."""

    def term(variables):  # noqa: ANN001, ANN202
        z = variables[0]  # (R, N, d)
        ratio = z.norm(dim=-1) / z.shape[-1] ** 0.5
        return weight * (ratio - 1).pow(2).sum(-1)

    return term


def project_l1_ball(v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of v onto {x : ‖x‖₁ ≤ radius_row} (Duchi et al. 2008):
    rows inside are unchanged; others become sign(v)·max(|v| − θ, 0) with θ from the sorted
    magnitudes."""
    radius = torch.as_tensor(radius, dtype=v.dtype, device=v.device).expand(v.shape[0])
    a = v.abs()
    inside = a.sum(1) <= radius
    u, _ = torch.sort(a, dim=1, descending=True)
    cumulative = u.cumsum(1) - radius[:, None]
    j = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    positive = (u - cumulative / j) > 0
    rho = positive.to(torch.long).cumsum(1).argmax(1)  # the last index where the test holds
    theta = cumulative.gather(1, rho[:, None]) / (rho[:, None] + 1).to(v.dtype)
    projected = torch.sign(v) * (a - theta).clamp_min(0)
    return torch.where(inside[:, None], v, projected)


def load_prior_generator(spec: str, observation: Observation, seed: int = 0) -> nn.Module:
    """The generator an attack searches: `spec` is a directory written by `gradinv
    train-generator` (or a custom one), or "untrained" for a freshly initialised DCGAN of the
    observation's shape (a prior that has seen no data)."""
    from ...generative import build_generator, load_generator

    if not spec:
        raise GradinvError(
            "this attack needs a generator: --attack-opt generator=DIR (train one with "
            "`gradinv train-generator --data SPEC@train --channels C --image-size S --out DIR`), "
            "or generator=untrained"
        )
    if spec == "untrained":
        c, h, w = observation.input_shape
        if h != w:
            raise GradinvError(f"the built-in generator makes square images, not {h}x{w}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = build_generator("dcgan", channels=c, image_size=h)
    else:
        generator = load_generator(spec)
    check_generator(generator, observation)
    return generator
