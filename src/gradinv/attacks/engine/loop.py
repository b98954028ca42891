"""The optimisation loop every attack shares: R trials (restarts) optimised together, NaN
recovery (a diverged trial is re-run from a new initialisation), the kept iterate per trial, snapshots, the
progress bar, Ctrl-C (stop and keep what was reached) and blind selection by matching loss."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .objective import Objective
from .optimisers import Optimiser
from .parametrisation import Parametrisation

MAX_NAN_RETRIES = 3
Schedule = Callable[[int], float]


@dataclass
class Trials:
    """The outcome of optimising R trials: kept iterates (the last finite ones), the matching
    distance of each (without priors: what trials are compared on), loss histories, snapshots
    (iteration, images in [0,1]) and whether Ctrl-C stopped the run."""

    variables: list[torch.Tensor]
    distances: torch.Tensor
    histories: list[list[float]]
    snapshots: list[list[tuple[int, torch.Tensor]]]
    interrupted: bool = False
    nan_restarts: int = 0
    seeds: list[int] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)  # per trial, B images in [0,1], cpu
    labels: list[torch.Tensor | None] = field(default_factory=list)  # per trial, joint labels

    @property
    def best(self) -> int:
        """The trial with the lowest matching distance (the server's only criterion)."""
        d = torch.where(torch.isfinite(self.distances), self.distances, torch.inf)
        return int(torch.argmin(d))

    def pick(self, trial: int) -> list[torch.Tensor]:
        """One trial's variables, keeping a trial dimension of 1."""
        return [v[trial : trial + 1].detach().clone() for v in self.variables]


@dataclass
class Run:
    """What one call of `optimise` needs besides the parametrisation and objective.

    targets: fixed labels (B,), or None to optimise soft labels jointly (logits per image);
    to_images: one trial's model inputs (N, C, H, W) -> the B reported images in [0,1], cpu."""

    iterations: int
    trials: int
    seed: int
    targets: torch.Tensor | None
    num_classes: int
    to_images: Callable[[torch.Tensor], torch.Tensor]
    schedule: Schedule | None = None
    num_snapshots: int = 40
    progress: bool = True
    label: str = ""
    first_trial: int = 0  # index of the first trial (seeds differ per trial index)
    # called after every step with (iteration, the best trial's current images in [0,1]) —
    # for benchmarks (time to quality); its own time is not the attack's
    on_step: Callable[[int, torch.Tensor], None] | None = None


def _announce(run: Run, two_steps: float) -> None:
    """One line before a long run: how long it will take at the measured speed."""
    total = two_steps / 2 * run.iterations
    if total < 60:
        return
    span = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.0f} min"
    tqdm.write(
        f"{run.label or 'attack'}: about {span} for {run.iterations} iterations at "
        f"{two_steps / 2:.2f} s each on this machine (--iterations to shorten)",
        file=sys.stderr,
    )


def trial_seed(seed: int, trial: int, attempt: int) -> int:
    return seed * 100_003 + trial * 101 + attempt


def optimise(
    run: Run,
    parametrisation: Parametrisation,
    objective: Objective,
    make_optimiser: Callable[[], Optimiser],
    initial: Sequence[torch.Tensor] | None = None,
) -> Trials:
    """Optimise `run.trials` trials together. `initial` (variables with a trial dimension)
    replaces the parametrisation's random start. Diverged trials are re-run from new
    initialisations (up to MAX_NAN_RETRIES rounds); a trial that never converges keeps its
    non-finite distance and is never selected."""
    indices = list(range(run.first_trial, run.first_trial + run.trials))
    bar = tqdm(total=run.iterations, desc=run.label, disable=not run.progress, leave=False)
    try:
        result = _round(run, parametrisation, objective, make_optimiser, indices, 0, bar, initial)
        for attempt in range(1, MAX_NAN_RETRIES + 1):
            failed = [i for i, d in enumerate(result.distances) if not math.isfinite(float(d))]
            if not failed or result.interrupted or initial is not None:
                break
            bar.reset()
            again = _round(run, parametrisation, objective, make_optimiser,
                           [indices[i] for i in failed], attempt, bar, None)  # fmt: skip
            result = _merge(result, again, failed)
            result.nan_restarts += len(failed)
    finally:
        bar.close()
    return result


def _merge(old: Trials, new: Trials, where: list[int]) -> Trials:
    for k, i in enumerate(where):
        for v_old, v_new in zip(old.variables, new.variables, strict=True):
            v_old[i] = v_new[k]
        old.distances[i] = new.distances[k]
        old.histories[i] = new.histories[k]
        old.snapshots[i] = new.snapshots[k]
        old.seeds[i] = new.seeds[k]
        old.images[i] = new.images[k]
        old.labels[i] = new.labels[k]
    old.interrupted = new.interrupted
    old.nan_restarts += new.nan_restarts
    return old


def _round(run, parametrisation, objective, make_optimiser, indices, attempt, bar, initial):  # noqa: ANN001, ANN202
    seeds = [trial_seed(run.seed, i, attempt) for i in indices]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    if initial is not None:
        variables = [v.detach().clone() for v in initial]
    else:
        per_trial = [
            parametrisation.initial(g, i) for g, i in zip(generators, indices, strict=True)
        ]
        variables = [torch.stack(vs) for vs in zip(*per_trial, strict=True)]
    n_images = parametrisation.inputs([v[:1] for v in variables]).shape[1]
    if run.targets is None:  # soft labels optimised jointly, drawn after the images (as before)
        ref = variables[0]
        logits = [
            torch.randn((n_images, run.num_classes), generator=g, dtype=torch.float64)
            for g in generators
        ]
        variables.append(torch.stack(logits).to(ref.device, ref.dtype))
    for v in variables:
        v.requires_grad_(True)
    count = len(indices)
    own = variables[:-1] if run.targets is None else variables

    def targets() -> torch.Tensor:
        if run.targets is not None:
            return run.targets
        return torch.softmax(variables[-1], dim=-1)

    distances: list[torch.Tensor] = []  # the matching distance of each evaluation in a step

    def closure() -> torch.Tensor:
        total, distance = objective(parametrisation.inputs(own), targets(), own)
        distances.append(distance.detach())
        finite = torch.isfinite(total)
        grads = torch.autograd.grad(torch.where(finite, total, 0.0).sum(), variables,
                                    allow_unused=True)  # fmt: skip
        for v, g in zip(variables, grads, strict=True):
            v.grad = torch.zeros_like(v) if g is None else g
        return total.detach()

    objective.reset()
    optimiser = make_optimiser()
    optimiser.bind(variables)
    kept = [v.detach().clone() for v in variables]
    alive = torch.ones(count, dtype=torch.bool)
    histories: list[list[float]] = [[] for _ in range(count)]
    snapshots: list[list[tuple[int, torch.Tensor]]] = [[] for _ in range(count)]
    every = max(1, run.iterations // max(1, run.num_snapshots))
    interrupted = False
    started = time.perf_counter()
    try:
        for it in range(run.iterations):
            factor = run.schedule(it) if run.schedule else 1.0
            distances.clear()
            losses = optimiser.step(closure, factor)
            matched = distances[0].double().cpu()  # before the step, without priors
            parametrisation.project(own)
            parametrisation.after_step(own, it, run.iterations, generators)
            finite = torch.isfinite(losses).cpu()
            for v in variables:
                finite &= torch.isfinite(v.detach()).flatten(1).all(1).cpu()
            alive &= finite
            if not bool(alive.any()):
                break
            with torch.no_grad():
                for k, v in zip(kept, variables, strict=True):
                    k[alive] = v.detach()[alive]
            values = matched.tolist()
            for r in torch.nonzero(alive).flatten().tolist():
                histories[r].append(values[r])
            if it % every == 0 or it == run.iterations - 1:
                with torch.no_grad():
                    x = parametrisation.inputs(kept[: len(own)])
                for r in range(count):
                    snapshots[r].append((it, run.to_images(x[r])))
            bar.update(1)
            if it % 10 == 0:
                best = min((values[r] for r in range(count) if alive[r]), default=math.nan)
                bar.set_postfix(loss=f"{best:.4g}")
            if it == 1 and run.progress:
                _announce(run, time.perf_counter() - started)
            if run.on_step is not None:
                live = [r for r in range(count) if alive[r]]
                r = min(live, key=lambda i: values[i])
                with torch.no_grad():
                    x = parametrisation.inputs([k[r : r + 1] for k in kept[: len(own)]])
                run.on_step(it, run.to_images(x[0]))
    except KeyboardInterrupt:
        interrupted = True
    with torch.no_grad():
        distances = torch.full((count,), math.nan, dtype=torch.float64)
        if bool(alive.any()) or interrupted:
            own_kept = kept[: len(own)]
            t = run.targets if run.targets is not None else torch.softmax(kept[-1], dim=-1)
            distances = objective.matching(parametrisation.inputs(own_kept), t).double().cpu()
        distances[~alive] = math.nan
        x = parametrisation.inputs(kept[: len(own)])
        images = [run.to_images(x[r]) for r in range(count)]
    b = images[0].shape[0]
    labels = [
        None if run.targets is not None else kept[-1][r, :b].argmax(dim=1).sort().values.cpu()
        for r in range(count)
    ]
    return Trials(kept, distances, histories, snapshots, interrupted, 0, seeds, images, labels)


def concatenate(parts: Sequence[tuple[Trials, int]], result: tuple[Trials, int]) -> Trials:
    """One trial made of several stages (e.g. GIAS's latent then weights): the history and
    snapshots of each part's chosen trial one after the other, and `result`'s trial as the
    outcome."""
    history: list[float] = []
    snapshots: list[tuple[int, torch.Tensor]] = []
    for trials, index in parts:
        offset = len(history)
        history += trials.histories[index]
        snapshots += [(offset + it, images) for it, images in trials.snapshots[index]]
    final, k = result
    return Trials(
        variables=[v[k : k + 1] for v in final.variables],
        distances=final.distances[k : k + 1].clone(),
        histories=[history],
        snapshots=[snapshots],
        interrupted=any(t.interrupted for t, _ in parts),
        nan_restarts=sum(t.nan_restarts for t, _ in parts),
        seeds=[final.seeds[k]] if final.seeds else [],
        images=[final.images[k]],
        labels=[final.labels[k]],
    )
