"""Gradient-inversion audits of real Flower training (extra `flower`: flwr 1.41).

    from flwr.serverapp.strategy import FedAvg
    from gradinv.integrations.flower import LeakageAuditStrategy, run_inprocess

    strategy = LeakageAuditStrategy(FedAvg(), "audit", model=Net(), input_shape=(1, 28, 28),
                                    attack="auto")
    run_inprocess(strategy, client_app, num_clients=4, num_rounds=2,
                  initial_arrays=ArrayRecord(Net().state_dict()), train_config=ConfigRecord(...))

The wrapper saves every chosen client's update as an Observation (`out_dir/round-R/client-NODEID/`)
and never changes what the wrapped strategy aggregates. See docs/flower.md."""

from __future__ import annotations

from ...errors import GradinvError

try:
    import flwr  # noqa: F401  (only this subpackage needs Flower)
except ImportError:
    raise GradinvError(
        "the Flower integration needs Flower 1.41: pip install gradinv[flower]"
    ) from None

from .audit import AuditRecord, LeakageAuditStrategy  # noqa: E402
from .capture import DEFAULT_KEYS  # noqa: E402
from .inprocess import InProcessGrid, node_id_of, run_inprocess  # noqa: E402

__all__ = [
    "DEFAULT_KEYS",
    "AuditRecord",
    "InProcessGrid",
    "LeakageAuditStrategy",
    "node_id_of",
    "run_inprocess",
]
