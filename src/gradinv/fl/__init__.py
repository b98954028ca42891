"""Federated learning simulation and the threat model (what the server observes)."""

from .client import ClientRound, aggregate, observe
from .observation import Observation, check_labels, check_normalization, server_copy
from .protocol import (
    LOSSES,
    Protocol,
    batchnorm_statistics,
    client_update,
    forward,
    loss_fn,
    simulate_update,
)

__all__ = [
    "LOSSES",
    "ClientRound",
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
