"""The attack engine: an optimisation attack is a parametrisation (what moves), an objective (what
is minimised) and a schedule; the engine runs R trials together with NaN recovery, snapshots,
progress, Ctrl-C and selection by matching loss.

    problem = Problem.build(observation, label_strategy="auto", priors=[TotalVariation(1e-4)])
    run = Run(iterations=500, trials=4, seed=0, targets=problem.labels,
              num_classes=observation.num_classes, to_images=problem.to_images)
    pixels = Pixels(observation, problem.batch_size, problem.batch_size)
    objective = Objective(problem.simulator, problem.batch_size, "cosine", problem.priors,
                          denormalize=observation.denormalize)
    trials = optimise(run, pixels, objective, lambda: Adam(0.1, signed=True))
    images = trials.images[trials.best]
"""

from .loop import MAX_NAN_RETRIES, Run, Trials, optimise, trial_seed
from .objective import Objective, Term
from .optimisers import LBFGS, Adam, Optimiser, lr_multistep, lr_warmup_cosine
from .parametrisation import Parametrisation, Pixels
from .problem import Problem
from .score import matching_loss
from .simulate import Transform, UpdateSimulator

__all__ = [
    "LBFGS",
    "MAX_NAN_RETRIES",
    "Adam",
    "Objective",
    "Optimiser",
    "Parametrisation",
    "Pixels",
    "Problem",
    "Run",
    "Term",
    "Transform",
    "Trials",
    "UpdateSimulator",
    "lr_multistep",
    "lr_warmup_cosine",
    "matching_loss",
    "optimise",
    "trial_seed",
]
