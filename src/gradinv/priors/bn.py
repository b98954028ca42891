from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..errors import GradinvError
from ..fl import Observation, batchnorm_statistics
from .base import Prior


@dataclass
class BatchNormStatistics(Prior):
    """BatchNorm statistics matching (DeepInversion, Yin et al. CVPR 2020; used by GradInversion,
    Yin et al. CVPR 2021): Σ_l ‖μ_l(x̂) − μ_l‖₂ + ‖σ²_l(x̂) − σ²_l‖₂ over the inputs of every
    BatchNorm layer. Targets are the client's batch statistics when the observation carries them
    (`observe(..., share_batch_stats=True)`), else the running statistics in `observation.buffers`.

    Example::

        obs = observe(resnet, images, labels, share_labels=True)
        attack = InvertingGradients(model="resnet18", priors=(("bn", 0.1),))
        rec = attack.reconstruct(obs)
    """

    required: bool = True  # False: a model without BatchNorm (or statistics) gets a zero penalty
    source: str = field(default="", init=False)  # "batch", "running" or "none", set by setup()

    def setup(self, observation: Observation) -> None:
        names = [
            n
            for n, m in observation.model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        self._names: list[str] = []
        self._targets: list[tuple[torch.Tensor, torch.Tensor]] = []
        if not names and not self.required:
            self.source = "none"
            return
        if not names:
            raise GradinvError(
                "prior 'bn' needs a model with BatchNorm layers (e.g. resnet18, convnet); "
                "this model has none"
            )
        stats = observation.batch_stats
        if all(f"{n}.mean" in stats and f"{n}.var" in stats for n in names):
            self.source = "batch"
            targets = [(stats[f"{n}.mean"], stats[f"{n}.var"]) for n in names]
        elif all(f"{n}.running_mean" in observation.buffers for n in names):
            self.source = "running"
            b = observation.buffers
            targets = [(b[f"{n}.running_mean"], b[f"{n}.running_var"]) for n in names]
        elif not self.required:
            self.source = "none"
            return
        else:
            raise GradinvError(
                "prior 'bn' needs BatchNorm statistics: the observation carries neither the "
                "client's batch statistics nor the running statistics (share_buffers=False)"
            )
        self._names = names
        self._targets = [(m.detach(), v.detach()) for m, v in targets]
        self._obs = observation
        self._model = copy.deepcopy(observation.model).train(observation.train_mode)
        self._params = {k: v.detach() for k, v in observation.parameters.items()}

    def discrepancy(self, images: torch.Tensor) -> torch.Tensor:
        """Σ_l ‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂ for a batch in [0,1] (the unweighted penalty)."""
        if not self._names:
            return images.new_zeros(())
        obs = self._obs
        stats = batchnorm_statistics(self._model, self._params, obs.buffers, obs.normalize(images))
        total = images.new_zeros(())
        for name, (mean, var) in zip(self._names, self._targets, strict=True):
            total = total + torch.linalg.vector_norm(stats[f"{name}.mean"] - mean)
            total = total + torch.linalg.vector_norm(stats[f"{name}.var"] - var)
        return total

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.discrepancy(batch) for batch in images])
