"""Federated learning simulation and the threat model (what the server observes)."""

from .client import ClientRound, aggregate, defended_update, observe
from .observation import Observation, check_labels, check_normalization, server_copy
from .protocol import (
    LOSSES,
    LossTerm,
    Protocol,
    Stochastic,
    batchnorm_statistics,
    bound_generator,
    client_update,
    forward,
    loss_fn,
    simulate_update,
    training_loss,
)

__all__ = [
    "LOSSES",
    "ClientRound",
    "LossTerm",
    "Stochastic",
    "bound_generator",
    "defended_update",
    "training_loss",
    "Observation",
    "Protocol",
    "aggregate",
    "batchnorm_statistics",
    "check_labels",
    "check_normalization",
    "client_update",
    "forward",
    "loss_fn",
    "observe",
    "server_copy",
    "simulate_update",
]
