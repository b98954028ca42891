"""Defenses applied on the client before the server's Observation is formed.

from gradinv.defenses import parse_defense, ClientRound, wrap, defended_update
defense = parse_defense("prune:ratio=0.9")
model = wrap(defense, model)                        # PRECODE changes the architecture
update = defended_update(defense, ClientRound.start(model, x, y, protocol, seed=0))
"""

from . import clip, dpsgd, noise, precode, prune, quantize, sign, soteria  # noqa: F401
from .base import DEFENSES, ClientRound, Defense, make_defense, parse_defense
from .client import defended_update, wrap

__all__ = [
    "DEFENSES",
    "ClientRound",
    "Defense",
    "defended_update",
    "make_defense",
    "parse_defense",
    "wrap",
]
