"""`run_inprocess`: a Flower strategy against a ClientApp for N clients in this very process — no
Ray, no SuperLink, no network. Flower 1.41's own `run_simulation` needs Ray (tens of seconds to
start); this Grid runs each client synchronously when its message is pushed.

Internal Flower API (pinned flwr==1.41.*, covered by tests/test_flower.py):
`flwr.supercore.task_identity.TaskIdentity` (read by `Message()` for the run, node and task ids)
and the message id kept in `Metadata.__dict__["_message_id"]` (Flower's own grids set it so)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import flwr
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from ...errors import GradinvError

if TYPE_CHECKING:
    from flwr.supercore.run import Run


def _internals() -> tuple[int, Any, Any]:
    """Flower's internal names this module needs, imported on use: the audit strategy (public
    API only) keeps working on a Flower where they moved."""
    try:
        from flwr.common.constant import SUPERLINK_NODE_ID
        from flwr.supercore.run import Run
        from flwr.supercore.task_identity import TaskIdentity
    except ImportError:  # pragma: no cover - another Flower than the pinned one
        raise GradinvError(
            f"run_inprocess needs flwr 1.41.* (found {flwr.__version__}): "
            "pip install gradinv[flower]"
        ) from None
    return SUPERLINK_NODE_ID, Run, TaskIdentity


FIRST_NODE_ID = 1000  # partition p runs on node FIRST_NODE_ID + p (Flower's server is node 1)


def node_id_of(partition_id: int) -> int:
    """The node id `run_inprocess` gives the client holding partition `partition_id`."""
    return FIRST_NODE_ID + int(partition_id)


class InProcessGrid(Grid):
    """A Grid whose nodes are `num_nodes` ClientApp instances in this process. Each node has its
    own Context kept across rounds, with `partition-id` and `num-partitions` in its node config
    as in Flower's simulation. A client that raises propagates its exception (with its
    traceback) instead of becoming an error reply: in-process runs are for debugging and audits."""

    def __init__(
        self,
        client_app: ClientApp | Callable[[Message, Context], Message],
        num_nodes: int,
        run_id: int = 1,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.client_app = client_app
        self._run = _internals()[1].create_empty(run_id)
        self._contexts = {
            node_id_of(p): Context(
                run_id=run_id,
                node_id=node_id_of(p),
                node_config={"partition-id": p, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for p in range(num_nodes)
        }
        self._replies: dict[str, Message] = {}  # message id -> reply, until pulled

    # --- Grid ------------------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message and run its node's ClientApp now; the replies wait to be pulled."""
        ids = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            if node not in self._contexts:
                raise GradinvError(f"a message is addressed to node {node}, which does not exist")
            msg_id = uuid.uuid4().hex
            msg.metadata.__dict__["_message_id"] = msg_id  # internal: as Flower's grids stamp it
            self._replies[msg_id] = self._deliver(msg, self._contexts[node])
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        # every reply is ready once pushed: clients run synchronously, so no timeout can pass
        return self.pull_messages(self.push_messages(messages))

    # --- one client ------------------------------------------------------------------------------
    def _deliver(self, msg: Message, context: Context) -> Message:
        """Run the ClientApp on its own copy of the message, as if it had crossed the network:
        strategies send one RecordDict to all nodes, which a client must not be able to change."""
        received = Message(content=copy.deepcopy(msg.content), metadata=copy.deepcopy(msg.metadata))
        with _identity(self._run.run_id, context.node_id):
            reply = self.client_app(received, context)
        if not isinstance(reply, Message):
            raise GradinvError(
                f"node {context.node_id}'s ClientApp returned {type(reply).__name__}, not a Message"
            )
        reply.metadata.__dict__["_message_id"] = uuid.uuid4().hex
        reply.metadata.__dict__["_src_node_id"] = context.node_id  # the server knows the sender
        if reply.has_content():  # decoupled from the client's objects, as after the network
            reply = Message(content=copy.deepcopy(reply.content), metadata=reply.metadata)
        return reply


@contextmanager
def _identity(run_id: int, node_id: int) -> Iterator[None]:
    """Set Flower's task identity (run, node, task) for the block and restore the previous one."""
    identity = _internals()[2]
    before = (identity._run_id, identity._node_id, identity._task_id)
    identity.run_id, identity.node_id, identity.task_id = run_id, node_id, 1
    try:
        yield
    finally:
        identity._run_id, identity._node_id, identity._task_id = before


def run_inprocess(
    strategy: Strategy,
    client_app: ClientApp | Callable[[Message, Context], Message],
    num_clients: int,
    num_rounds: int,
    initial_arrays: ArrayRecord | Mapping[str, torch.Tensor],
    train_config: ConfigRecord | Mapping[str, Any] | None = None,
    *,
    evaluate_config: ConfigRecord | Mapping[str, Any] | None = None,
    evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> Result:
    """`strategy.start(...)` against `num_clients` copies of `client_app` in this process; returns
    Flower's Result. Clients get `partition-id` 0..N−1 and `num-partitions` N in their node config
    and run on nodes `node_id_of(partition)`."""
    for name, value in (("num_clients", num_clients), ("num_rounds", num_rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GradinvError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(strategy, Strategy):
        raise GradinvError(f"strategy must be a Flower Strategy, got {type(strategy).__name__}")
    if not callable(client_app):
        raise GradinvError(f"client_app must be a ClientApp, got {type(client_app).__name__}")
    _check_sampling(strategy, num_clients)
    if not isinstance(initial_arrays, ArrayRecord):
        initial_arrays = ArrayRecord(dict(initial_arrays))
    grid = InProcessGrid(client_app, num_clients, run_config=run_config)
    with _identity(grid.run.run_id, _internals()[0]):
        return strategy.start(
            grid=grid,
            initial_arrays=initial_arrays,
            num_rounds=num_rounds,
            train_config=_config(train_config),
            evaluate_config=_config(evaluate_config),
            evaluate_fn=evaluate_fn,
        )


def _config(config: ConfigRecord | Mapping[str, Any] | None) -> ConfigRecord | None:
    if config is None or isinstance(config, ConfigRecord):
        return config
    return ConfigRecord(dict(config))


def _check_sampling(strategy: Strategy, num_clients: int) -> None:
    """Flower's samplers wait (forever, here) for `min_*_nodes` nodes to connect: say it now."""
    for attr in ("min_available_nodes", "min_train_nodes", "min_evaluate_nodes"):
        need = getattr(strategy, attr, None)
        if isinstance(need, int) and need > num_clients:
            raise GradinvError(
                f"the strategy's {attr}={need} exceeds num_clients={num_clients}; "
                f"pass {attr}={num_clients} (or fewer) to the strategy"
            )
