"""What every optimisation attack shares: options, building the problem from the observation, and
turning the engine's trials into a Reconstruction. An attack file states its parametrisation, its
objective and its schedule (see gradinv.attacks.engine); pixel attacks only pick an optimiser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GradinvError
from ..fl import Observation
from ..labels import STRATEGIES
from ..options import option
from ..priors import Prior, make_prior
from .base import ATTACKS, Attack, Reconstruction, make_attack
from .distances import DISTANCES
from .engine import Objective, Optimiser, Pixels, Problem, Run, Trials, optimise
from .engine.loop import Schedule


@dataclass
class OptimizationAttack(Attack):
    """Shared hyper-parameters of gradient-matching attacks."""

    iterations: int = option(1000, "optimiser steps", low=1)
    restarts: int = option(
        1, "trials from different random starts, optimised together; the one with the lowest "
        "matching loss is kept", low=1,
    )  # fmt: skip
    distance: str = option("cosine", "gradient distance: l2, cosine, l1, l2-layers")
    label_strategy: str = option(
        "auto", "how labels are obtained when the server is not told them: a label strategy, "
        "or joint (optimised with the images)",
    )  # fmt: skip
    priors: tuple = option((), "extra priors, ((name, weight), ...), e.g. (('tv', 1e-4),)")
    num_snapshots: int = option(40, "images kept along the way for the progress animation", low=1)
    init: str = option(
        "random", "random, or another attack whose reconstruction starts the first trial "
        "(e.g. rgap)",
    )  # fmt: skip
    init_options: tuple = option(
        (), "options of the init attack, ((key, value), ...), e.g. (('generator', 'DIR'),)",
    )  # fmt: skip
    defense_aware: bool = option(
        False, "re-apply the recorded defenses' deterministic part to the simulated update and "
        "match only where the observed update carries information",
    )  # fmt: skip

    def check(self) -> None:
        super().check()
        DISTANCES.get(self.distance)
        if self.label_strategy != "joint":
            STRATEGIES.get(self.label_strategy)
        seen = set()
        for item in self.priors:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise GradinvError(f"priors must be (name, weight) pairs, got {item!r}")
            make_prior(*item)
            if item[0] in seen:  # two group priors would each multiply the trials
                raise GradinvError(f"prior {item[0]!r} is given twice; give each prior once")
            seen.add(item[0])
        if self.init != "random":
            ATTACKS.get(self.init)
            if self.init == self.name:
                raise GradinvError(f"{self.name}: init must name another attack or 'random'")
            make_attack(self.init, progress=False, **self._init_options())  # checks the options
        elif self.init_options:
            raise GradinvError(f"{self.name}: init_options need init=ATTACK")

    def _init_options(self) -> dict[str, Any]:
        for item in self.init_options:
            if not (
                isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
            ):
                raise GradinvError(f"init_options must be (key, value) pairs, got {item!r}")
        return {"seed": self.seed, **dict(self.init_options)}

    # --- what subclasses state ---------------------------------------------------------------------
    def make_priors(self) -> list[Prior]:
        """The priors added to the matching loss (subclasses add their own)."""
        return [make_prior(n, w) for n, w in self.priors]

    def optimiser(self) -> Optimiser:
        raise NotImplementedError

    def schedule(self) -> Schedule | None:
        return None

    def objective(self, problem: Problem) -> Objective:
        return Objective(
            problem.simulator, problem.batch_size, self.distance, problem.priors,
            group=problem.group, denormalize=problem.observation.denormalize,
        )  # fmt: skip

    def solve(self, problem: Problem) -> Trials:
        """Default: optimise the pixels of R trials; subclasses with other parametrisations or
        several stages override this."""
        pixels = Pixels(problem.observation, problem.group * problem.batch_size,
                        problem.batch_size, problem.priors, problem.start)  # fmt: skip
        return optimise(self.run(problem), pixels, self.objective(problem), self.optimiser)

    # --- shared machinery --------------------------------------------------------------------------
    def run(self, problem: Problem, iterations: int | None = None, **kw: Any) -> Run:
        """The engine's run settings for this attack (its iterations, restarts, seed, labels)."""
        iterations = iterations or self.iterations
        return Run(
            iterations=iterations, trials=kw.pop("trials", self.restarts), seed=self.seed,
            targets=problem.labels, num_classes=problem.observation.num_classes,
            to_images=problem.to_images, schedule=kw.pop("schedule", self.schedule()),
            num_snapshots=self.num_snapshots, progress=self.progress, label=self.name, **kw,
        )  # fmt: skip

    def build_problem(self, observation: Observation) -> Problem:
        problem = Problem.build(observation, self.label_strategy, self.make_priors(),
                                defense_aware=self.defense_aware)  # fmt: skip
        if self.init != "random":
            init = make_attack(self.init, progress=False, **self._init_options())
            start = init.reconstruct(observation)
            if start.images.shape[0] != problem.batch_size:
                raise GradinvError(
                    f"init attack {self.init!r} returned {start.images.shape[0]} images for a "
                    f"batch of {problem.batch_size}"
                )
            problem.start = observation.normalize(
                start.images.to(observation.device, observation.dtype)
            )
        return problem

    def reconstruct(self, observation: Observation) -> Reconstruction:
        self.check()
        observation.validate()
        problem = self.build_problem(observation)
        trials = self.solve(problem)
        return self.reconstruction(problem, trials)

    def reconstruction(self, problem: Problem, trials: Trials, **info: Any) -> Reconstruction:
        best = trials.best
        if not torch.isfinite(trials.distances[best]) and not trials.interrupted:
            raise GradinvError(
                f"{self.name}: the matching loss was NaN/Inf in every restart "
                f"({trials.nan_restarts} re-initialisations); try a smaller learning rate"
            )
        labels = problem.labels if problem.labels is not None else trials.labels[best]
        return Reconstruction(
            images=trials.images[best],
            labels=None if labels is None else labels.detach().cpu(),
            loss_history=trials.histories[best],
            snapshots=trials.snapshots[best],
            info={
                "final_loss": float(trials.distances[best]),
                "matching_losses": [float(d) for d in trials.distances],
                "restarts": len(trials.distances),
                "nan_restarts": trials.nan_restarts,
                "interrupted": trials.interrupted,
                "batch_size": problem.batch_size,
                "init": self.init,
                "labels_source": problem.labels_source,
                **problem.info,
                **info,
            },
        )
