"""What the optimiser moves. A parametrisation turns its variables (each with a leading trial
dimension R) into dummy images in model input space, (R, N, C, H, W), and keeps them valid after
every step. Pixels are one choice; a generator's latent, its weights or an intermediate feature
(see gradinv.attacks.engine.generative) are others."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...fl import Observation
from ...priors import Prior


class Parametrisation:
    """Base class. `initial` draws one trial's variables (no trial dimension) from `generator`;
    the engine stacks R of them. `inputs` maps stacked variables to (R, N, C, H, W) model inputs;
    `project` restores validity in place after a step; `after_step` lets priors act (Langevin)."""

    def initial(self, generator: torch.Generator, trial: int) -> list[torch.Tensor]:
        raise NotImplementedError

    def inputs(self, variables: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def project(self, variables: Sequence[torch.Tensor]) -> None:
        """Default: nothing to restore."""

    def after_step(
        self,
        variables: Sequence[torch.Tensor],
        iteration: int,
        total: int,
        generators: Sequence[torch.Generator],
    ) -> None:
        """Default: nothing."""


class Pixels(Parametrisation):
    """The dummy images themselves, in model input space, clamped to the valid box [0,1] after
    de-normalisation. Trial 0 may start from given images (`start`, e.g. a closed form's
    reconstruction); priors may adjust the initial iterate (group consistency)."""

    def __init__(
        self,
        observation: Observation,
        count: int,
        batch_size: int,
        priors: Sequence[Prior] = (),
        start: torch.Tensor | None = None,
        box: bool = True,
    ) -> None:
        self.obs, self.count, self.batch_size = observation, count, batch_size
        self.priors, self.start, self.box = list(priors), start, box
        self.lower, self.upper = observation.box()
        self._acting = [p for p in self.priors if type(p).after_step is not Prior.after_step]

    def initial(self, generator: torch.Generator, trial: int) -> list[torch.Tensor]:
        obs = self.obs
        shape = (self.count, *obs.input_shape)
        x = torch.randn(shape, generator=generator, dtype=torch.float64).to(obs.device, obs.dtype)
        if trial == 0 and self.start is not None:
            x = self.start.repeat(self.count // self.start.shape[0], 1, 1, 1)
        for p in self.priors:
            x = p.initial(x, self.batch_size)
        return [x]

    def inputs(self, variables: Sequence[torch.Tensor]) -> torch.Tensor:
        return variables[0]

    def project(self, variables: Sequence[torch.Tensor]) -> None:
        if self.box:
            with torch.no_grad():
                x = variables[0]
                x.copy_(torch.maximum(torch.minimum(x, self.upper), self.lower))

    def after_step(
        self,
        variables: Sequence[torch.Tensor],
        iteration: int,
        total: int,
        generators: Sequence[torch.Generator],
    ) -> None:
        if not self._acting:
            return
        x = variables[0]
        for r, gen in enumerate(generators):
            for p in self._acting:
                p.after_step(x[r], iteration, total, gen)
        self.project(variables)
