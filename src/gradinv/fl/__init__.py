"""Federated learning simulation and the threat model (what the server observes)."""

from .client import aggregate, observe
from .observation import Observation
from .protocol import Protocol, batchnorm_statistics, forward, loss_fn, simulate_update

__all__ = [
    "Observation",
    "Protocol",
    "aggregate",
    "batchnorm_statistics",
    "forward",
    "loss_fn",
    "observe",
    "simulate_update",
]
