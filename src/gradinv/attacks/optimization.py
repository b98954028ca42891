"""What every optimisation attack shares: the simulated update ĝ(x̂, ŷ), restarts, NaN recovery,
progress bar, snapshots and Ctrl-C (stop and keep the best so far). Subclasses write one method,
`_optimise`, that runs one restart."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import GradinvError
from ..fl import Observation, simulate_update
from ..labels import STRATEGIES, estimate_batch_size, recover_labels
from ..priors import Prior, make_prior
from .base import ATTACKS, Attack, Reconstruction, make_attack
from .distances import DISTANCES

MAX_NAN_RETRIES = 3


class Matcher:
    """ĝ(x̂, ŷ): the update the observed client would have sent for a dummy batch."""

    def __init__(self, observation: Observation) -> None:
        self.observation = observation
        self.params = observation.trainable()
        self.names = list(self.params)
        self.target = [observation.update[k] for k in self.names]
        observation.model.train(observation.train_mode)

    def update(self, x: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        obs = self.observation
        out = simulate_update(
            obs.model, self.params, obs.buffers, x, targets, obs.protocol, create_graph=True
        )
        return [out[k] for k in self.names]


class NonFiniteLoss(RuntimeError):
    """The matching loss became NaN/Inf: restart from a new initialisation."""


@dataclass
class Trial:
    """One restart's state, updated in place every step so an interrupt keeps the latest iterate."""

    x: torch.Tensor  # dummy batch in model input space
    label_logits: torch.Tensor | None = None
    loss: float = math.inf
    history: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    best_x: torch.Tensor | None = None  # last finite iterate
    generator: torch.Generator | None = None  # for priors that draw noise (Langevin)


@dataclass
class OptimizationAttack(Attack):
    """Shared hyper-parameters of gradient-matching attacks."""

    iterations: int = 1000
    restarts: int = 1
    distance: str = "cosine"
    label_strategy: str = "auto"  # used when labels are not observed; "joint" optimises them
    priors: tuple[tuple[str, float], ...] = ()
    num_snapshots: int = 40
    # "random", or the name of another attack (e.g. a closed form such as "rgap") whose
    # reconstruction starts the first restart; later restarts start from random images.
    init: str = "random"

    def check(self) -> None:
        if self.iterations < 1:
            raise GradinvError(f"iterations must be >= 1, got {self.iterations}")
        if self.restarts < 1:
            raise GradinvError(f"restarts must be >= 1, got {self.restarts}")
        DISTANCES.get(self.distance)
        if self.label_strategy != "joint":
            STRATEGIES.get(self.label_strategy)
        for name, weight in self.priors:
            make_prior(name, weight)
        if self.init != "random":
            ATTACKS.get(self.init)
            if self.init == self.name:
                raise GradinvError(f"{self.name}: init must name another attack or 'random'")

    def make_priors(self) -> list[Prior]:
        """The priors added to the matching loss (subclasses may add their own)."""
        return [make_prior(n, w) for n, w in self.priors]

    # --- the one method subclasses write ---------------------------------------------------------
    def _optimise(self, ctx: _Context, trial: Trial) -> None:
        raise NotImplementedError

    # --- shared driver ----------------------------------------------------------------------------
    def reconstruct(self, observation: Observation) -> Reconstruction:
        self.check()
        observation.validate()
        was_training = observation.model.training
        try:
            return self._reconstruct(observation)
        finally:
            observation.model.train(was_training)  # the Matcher switches to the client's mode

    def _reconstruct(self, observation: Observation) -> Reconstruction:
        ctx = _Context.build(self, observation)
        best: Trial | None = None
        interrupted, nan_restarts = False, 0
        bar = tqdm(
            total=self.iterations * self.restarts,
            desc=self.name,
            disable=not self.progress,
            leave=False,
        )
        ctx.bar = bar
        try:
            for r in range(self.restarts):
                for attempt in range(MAX_NAN_RETRIES + 1):
                    gen = torch.Generator().manual_seed(self.seed * 100_003 + r * 101 + attempt)
                    trial = ctx.new_trial(gen, from_init=r == 0 and attempt == 0)
                    diverged = False
                    try:
                        self._optimise(ctx, trial)
                    except NonFiniteLoss:
                        nan_restarts, diverged = nan_restarts + 1, True
                        continue
                    except KeyboardInterrupt:
                        interrupted = True
                    break
                if not diverged and trial.best_x is not None:
                    trial.loss = ctx.final_distance(trial)
                    if best is None or trial.loss < best.loss:
                        best = trial
                if interrupted:
                    break
        finally:
            bar.close()
        if best is None:
            raise GradinvError(
                f"{self.name}: the matching loss was NaN/Inf in every restart "
                f"({nan_restarts} re-initialisations); try a smaller learning rate"
            )
        labels = ctx.labels
        if labels is None and best.label_logits is not None:
            labels = best.label_logits[: ctx.batch_size].argmax(dim=1).sort().values
        return Reconstruction(
            images=ctx.to_images(best.best_x),  # type: ignore[arg-type]
            labels=None if labels is None else labels.detach().cpu(),
            loss_history=best.history,
            snapshots=best.snapshots,
            info={
                "final_loss": best.loss,
                "restarts": self.restarts,
                "nan_restarts": nan_restarts,
                "interrupted": interrupted,
                "batch_size": ctx.batch_size,
                "init": self.init,
                "labels_source": ctx.labels_source,
            },
        )


@dataclass
class _Context:
    """Everything a restart needs, built once per reconstruct()."""

    attack: OptimizationAttack
    observation: Observation
    matcher: Matcher
    batch_size: int
    labels: torch.Tensor | None
    labels_source: str
    priors: list[Prior]
    lower: torch.Tensor
    upper: torch.Tensor
    bar: Any = None
    init_x: torch.Tensor | None = None  # starting images (model input space) from `attack.init`
    group: int = 1  # dummy batches optimised jointly (group-consistency prior), each of B images

    @classmethod
    def build(cls, attack: OptimizationAttack, obs: Observation) -> _Context:
        batch_size = obs.batch_size or estimate_batch_size(obs).estimate
        if obs.labels is not None:
            labels, source = obs.labels.to(obs.device), "observed"
        elif attack.label_strategy == "joint":
            labels, source = None, "joint"
        else:
            labels = recover_labels(obs, attack.label_strategy, batch_size).to(obs.device)
            source = attack.label_strategy
        priors = attack.make_priors()
        for p in priors:
            p.setup(obs)
        group = max([p.group_size() for p in priors], default=1)
        lower, upper = obs.box()
        init_x = None
        if attack.init != "random":
            start = make_attack(attack.init, progress=False, seed=attack.seed).reconstruct(obs)
            if start.images.shape[0] != batch_size:
                raise GradinvError(
                    f"init attack {attack.init!r} returned {start.images.shape[0]} images for a "
                    f"batch of {batch_size}"
                )
            init_x = obs.normalize(start.images.to(obs.device, obs.dtype))
        return cls(
            attack, obs, Matcher(obs), batch_size, labels, source, priors, lower, upper,
            init_x=init_x, group=group,
        )  # fmt: skip

    def new_trial(self, gen: torch.Generator, from_init: bool = False) -> Trial:
        obs = self.observation
        n = self.group * self.batch_size
        shape = (n, *obs.input_shape)
        x = torch.randn(shape, generator=gen, dtype=torch.float64).to(obs.device, obs.dtype)
        if from_init and self.init_x is not None:
            x = self.init_x.repeat(self.group, 1, 1, 1)
        for p in self.priors:
            x = p.initial(x, self.batch_size)
        logits = None
        if self.labels is None:
            logits = torch.randn((n, obs.num_classes), generator=gen, dtype=torch.float64)
            logits = logits.to(obs.device, obs.dtype).requires_grad_(True)
        return Trial(x=x.requires_grad_(True), label_logits=logits, generator=gen)

    def targets(self, trial: Trial) -> torch.Tensor:
        if self.labels is not None:
            return self.labels
        return torch.softmax(trial.label_logits, dim=1)  # type: ignore[arg-type]

    def objective(self, trial: Trial, distance_weight: float = 1.0) -> torch.Tensor:
        """Gradient distance (times `distance_weight`) plus weighted priors on the [0,1] image.
        With a group of G dummy batches: the sum over members of distance and per-member priors,
        plus the joint priors (group consistency) on all G·B images."""
        distance = DISTANCES.get(self.attack.distance)
        targets = self.targets(trial)
        own = [p for p in self.priors if not p.joint]
        joint = [p for p in self.priors if p.joint]
        loss: torch.Tensor | None = None
        b = self.batch_size
        for g in range(self.group):
            x = trial.x if self.group == 1 else trial.x[g * b : (g + 1) * b]
            t = (
                targets
                if self.labels is not None or self.group == 1
                else targets[g * b : (g + 1) * b]
            )
            d = distance(self.matcher.update(x, t), self.matcher.target)
            term = d if distance_weight == 1.0 else distance_weight * d
            if own:
                images = self.observation.denormalize(x)
                term = term + sum(p(images) for p in own)
            loss = term if loss is None else loss + term
        if joint:
            images = self.observation.denormalize(trial.x)
            loss = loss + sum(p(images) for p in joint)
        return loss  # type: ignore[return-value]

    def final_distance(self, trial: Trial) -> float:
        """D(ĝ, g) of the kept iterate, without priors: what restarts are compared on (the
        per-step loss is taken before the step and includes the priors)."""
        distance = DISTANCES.get(self.attack.distance)
        x, b, targets = trial.best_x, self.batch_size, self.targets(trial)
        total = 0.0
        for g in range(self.group):
            member = x if self.group == 1 else x[g * b : (g + 1) * b]  # type: ignore[index]
            t = (
                targets
                if self.labels is not None or self.group == 1
                else targets[g * b : (g + 1) * b]
            )
            d = distance(self.matcher.update(member, t.detach()), self.matcher.target)
            total += float(d.detach())
        return total

    def project(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, self.upper), self.lower))

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        images = self.observation.denormalize(x.detach())
        for p in self.priors:
            images = p.fuse(images, self.batch_size)
        return images.clamp(0, 1).cpu()

    def after_step(self, trial: Trial, iteration: int) -> None:
        """Let priors act on the iterate (Langevin noise), then project back onto the box."""
        acting = [p for p in self.priors if type(p).after_step is not Prior.after_step]
        if not acting:
            return
        gen = trial.generator or torch.Generator().manual_seed(iteration)
        for p in acting:
            p.after_step(trial.x, iteration, self.attack.iterations, gen)
        self.project(trial.x)

    def record(self, trial: Trial, iteration: int, loss: float) -> None:
        """Book-keeping after each step; raises NonFiniteLoss on NaN/Inf."""
        if not math.isfinite(loss) or not torch.isfinite(trial.x).all():
            raise NonFiniteLoss
        trial.loss = loss
        trial.history.append(loss)
        trial.best_x = trial.x.detach().clone()
        every = max(1, self.attack.iterations // max(1, self.attack.num_snapshots))
        if iteration % every == 0 or iteration == self.attack.iterations - 1:
            trial.snapshots.append((iteration, self.to_images(trial.x)))
        if self.bar is not None:
            self.bar.update(1)
            if iteration % 10 == 0:
                self.bar.set_postfix(loss=f"{loss:.4g}")
        self.after_step(trial, iteration)
