"""Attacks: every one is registered by name and exposes `reconstruct(observation) -> Reconstruction`."""

from . import auto, dip, dlg, ggl, gias, gifd, ig  # noqa: F401  (registration)
from .base import ATTACKS, Attack, Reconstruction, make_attack
from .bias import BiasAttack  # noqa: F401  (registration)
from .distances import DISTANCES
from .dlg import DLG
from .gradinversion import GradInversion  # noqa: F401  (registration)
from .ig import InvertingGradients
from .rgap import RGap  # noqa: F401  (registration)
from .spear import Spear  # noqa: F401  (registration)

__all__ = [
    "ATTACKS",
    "DISTANCES",
    "DLG",
    "Attack",
    "InvertingGradients",
    "Reconstruction",
    "make_attack",
]
