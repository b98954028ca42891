"""`LeakageAuditStrategy`: wraps a Flower (Message API) strategy and saves what the server sees of
each chosen client's update as a gradinv Observation, optionally attacking it on the spot.

It is a pure observer: the wrapped strategy configures and aggregates exactly as it would alone,
with the very same messages."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from ...attacks import Attack, Reconstruction, make_attack
from ...attacks.engine import matching_loss
from ...errors import GradinvError
from ...fl import Observation, Protocol, check_normalization
from ...fl.protocol import LossFn
from .capture import client_update, config_facts, merge_keys, round_facts, split_state
from .report import save_capture, save_reconstruction

log = logging.getLogger(__name__)


@dataclass
class AuditRecord:
    """One saved observation (and, when an attack ran, its outcome)."""

    round: int
    node_id: int
    directory: str
    protocol: Protocol
    batch_size: int
    reconstruction: Reconstruction | None = None
    matching_loss: float | None = None  # cosine distance of the reconstruction's update
    time_s: float | None = None  # the attack's time
    error: str | None = None  # why the attack gave no reconstruction


class LeakageAuditStrategy(Strategy):
    """Wrap `strategy` (FedAvg or any `flwr.serverapp.strategy.Strategy`); for the chosen `rounds`
    and `clients` save each client's update under `out_dir/round-R/client-NODEID/`.

    clients: Flower node ids (`reply.metadata.src_node_id`), the only client identity a server
    has; partition ids live in the clients' node config, which the server never sees
    (`run_inprocess` gives partition p the node id `node_id_of(p)`). None: every client.
    rounds: round numbers from 1; None: every round.
    model: the architecture the clients train (its state dict names must be the arrays' keys);
    a model from `gradinv.build_model` makes observations that reload without `model=`.
    input_shape: (C, H, W) of the clients' inputs. num_classes: inferred from the model's output.
    keys: renames of the facts read from the train config (`lr`, `local-epochs`, `batch-size`)
    and the reply's metrics (`num-examples`; default: the strategy's `weighted_by_key`).
    known: values of those facts the server knows from elsewhere (e.g. `{"lr": 0.01}` when
    clients read it from their run config; `{"batch-size": None}`: whole-batch steps).
    mean, std: the clients' input normalisation (x − mean) / std, so reconstructions are pixels.
    loss: the clients' training loss ("ce", "mse" or a callable).
    attack: None (save only), an attack name (e.g. "auto") or an Attack instance, run on each
    saved observation inside `aggregate_train` (the round waits for it).
    """

    def __init__(
        self,
        strategy: Strategy,
        out_dir: str,
        rounds: Iterable[int] | None = None,
        clients: Iterable[int] | None = None,
        attack: str | Attack | None = None,
        model: nn.Module | None = None,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        keys: Mapping[str, str] | None = None,
        *,
        known: Mapping[str, Any] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        loss: str | LossFn = "ce",
        overwrite: bool = False,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise GradinvError(
                "strategy must be a flwr.serverapp.strategy.Strategy, "
                f"got {type(strategy).__name__}"
            )
        if not isinstance(model, nn.Module):
            raise GradinvError("model= is required: the nn.Module the clients train")
        self.strategy = strategy
        self.model = model
        self.input_shape = _shape(input_shape)
        self.num_classes = _num_classes(model, self.input_shape, num_classes)
        c = self.input_shape[0]
        self.mean = tuple(float(v) for v in mean) if mean is not None else (0.0,) * c
        self.std = tuple(float(v) for v in std) if std is not None else (1.0,) * c
        if len(self.mean) != c or len(self.std) != c:
            raise GradinvError(
                f"mean/std need {c} channel values, got {len(self.mean)}/{len(self.std)}"
            )
        check_normalization(self.mean, self.std)
        keys = dict(keys or {})
        weight = getattr(strategy, "weighted_by_key", None)  # FedAvg weighs replies by this key
        if "num-examples" not in keys and isinstance(weight, str):
            keys["num-examples"] = weight
        self.keys = merge_keys(keys)
        self.known = dict(known or {})
        for fact in self.known:
            if fact not in self.keys:
                raise GradinvError(
                    f"unknown fact {fact!r} in known=; choose from: {', '.join(self.keys)}"
                )
        Protocol(loss=loss)  # an unknown loss name fails now, not after the first round
        self.loss = loss
        self.rounds = _ids(rounds, "rounds", low=1)
        self.clients = _ids(clients, "clients", low=0)
        self.attack = make_attack(attack, progress=False) if isinstance(attack, str) else attack
        if self.attack is not None and not isinstance(self.attack, Attack):
            raise GradinvError(f"attack must be a name or an Attack, got {type(attack).__name__}")
        self.out_dir = _out_dir(out_dir, overwrite)
        self.records: list[AuditRecord] = []
        # round -> node id -> (global tensors sent, train config sent), kept until aggregation
        self._sent: dict[int, dict[int, tuple[dict[str, torch.Tensor], dict[str, Any]]]] = {}

    def __getattr__(self, name: str) -> Any:
        # attributes of the wrapped strategy (fraction_train, min_available_nodes, ...) read through
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)

    # --- training: the two hooks that see the update --------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's messages, unchanged (as a list: they are read twice); for an
        audited round, the arrays and config each chosen node receives are kept."""
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        if self.rounds is not None and server_round not in self.rounds:
            return messages
        converted: dict[int, dict[str, torch.Tensor]] = {}  # one conversion per distinct record
        sent = {}
        for msg in messages:
            node = msg.metadata.dst_node_id
            if self.clients is not None and node not in self.clients:
                continue
            where = f"round {server_round}, node {node}"
            record = _one(msg.content, "arrays", self._key("arrayrecord_key"), where)
            if id(record) not in converted:
                state = _tensors(record)
                split_state(self.model, state, f"{where} (arrays sent)")
                converted[id(record)] = state
            cfg = _one(msg.content, "config", self._key("configrecord_key"), where, needed=False)
            config_facts(dict(cfg or {}), self.keys, self.known, where)  # fail before training
            sent[node] = (converted[id(record)], dict(cfg or {}))
        self._sent[server_round] = sent
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Save the chosen replies' updates, then let the wrapped strategy aggregate the very same
        replies (read, never modified)."""
        replies = list(replies)  # may be a one-shot iterable: read here and by the strategy
        sent = self._sent.pop(server_round, {})
        for reply in replies:
            node = reply.metadata.src_node_id
            if node in sent and not reply.has_error():
                self._capture(server_round, node, *sent[node], reply)
        return self.strategy.aggregate_train(server_round, replies)

    # --- everything else is the wrapped strategy's ----------------------------------------------
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        log.info("LeakageAuditStrategy: saving observations to %s", self.out_dir)
        self.strategy.summary()

    # --- capture ------------------------------------------------------------------------------
    def _key(self, attribute: str) -> str | None:
        return getattr(self.strategy, attribute, None)

    def _capture(
        self,
        server_round: int,
        node: int,
        state: dict[str, torch.Tensor],
        config: dict[str, Any],
        reply: Message,
    ) -> None:
        where = f"round {server_round}, node {node}"
        returned = _tensors(_one(reply.content, "arrays", self._key("arrayrecord_key"), where))
        metrics = _one(reply.content, "metrics", None, where, needed=False) or {}
        facts = round_facts(config, metrics, self.keys, self.known, where)
        protocol = facts.protocol(self.loss)
        trainable, frozen, buffers = split_state(self.model, state, where)
        update = client_update(trainable, returned, protocol, where)
        obs = Observation.from_update(
            self.model, trainable, update, self.input_shape, self.num_classes,
            buffers=buffers, frozen_values=frozen, protocol=protocol, mean=self.mean,
            std=self.std, batch_size=facts.num_examples, train_mode=True,
        )  # fmt: skip
        directory = os.path.join(self.out_dir, f"round-{server_round}", f"client-{node}")
        obs.save(directory)
        save_capture(directory, server_round, node, facts, protocol, config)
        record = AuditRecord(server_round, node, directory, protocol, facts.num_examples)
        if self.attack is not None:
            self._attack(obs, record)
        self.records.append(record)
        log.info("saved %s (%s, B=%d)", directory, protocol.kind, facts.num_examples)

    def _attack(self, obs: Observation, record: AuditRecord) -> None:
        """Run the attack; one it cannot apply (a GradinvError) is written down, never fatal:
        the audit must not stop the training it watches."""
        assert self.attack is not None
        start = time.perf_counter()
        try:
            rec = self.attack.reconstruct(obs)
            record.matching_loss = matching_loss(obs, rec.images, rec.labels)
        except GradinvError as exc:
            record.error = str(exc)
            log.warning("attack %s on %s failed: %s", self.attack.name, record.directory, exc)
        else:
            record.reconstruction = rec
        record.time_s = round(time.perf_counter() - start, 3)
        save_reconstruction(record, self.attack.name)


def _shape(input_shape: Sequence[int] | None) -> tuple[int, int, int]:
    if input_shape is None:
        raise GradinvError("input_shape= is required: (C, H, W) of the clients' inputs")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                  for v in shape):  # fmt: skip
        raise GradinvError(f"input_shape must be (C, H, W) positive integers, got {input_shape!r}")
    return shape  # type: ignore[return-value]


def _num_classes(model: nn.Module, shape: tuple[int, int, int], given: int | None) -> int:
    """The model's number of outputs on one zero input (checks the model takes `shape`)."""
    p = next(model.parameters(), None)
    if p is None:
        raise GradinvError("the model has no parameters: nothing is shared, nothing to audit")
    was_training = model.training
    model.eval()  # no BatchNorm statistics are updated by this probe
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *shape, device=p.device, dtype=p.dtype))
    except RuntimeError as exc:
        raise GradinvError(
            f"the model cannot take inputs of shape {shape}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise GradinvError("the model must return (batch, classes) logits")
    if given is not None and given != out.shape[1]:
        raise GradinvError(f"num_classes={given} but the model outputs {out.shape[1]} logits")
    return int(out.shape[1])


def _ids(values: Iterable[int] | None, name: str, low: int) -> frozenset[int] | None:
    if values is None:
        return None
    if isinstance(values, int):
        values = [values]
    try:
        ids = frozenset(values)
    except TypeError:
        raise GradinvError(f"{name} must be a list of integers or None, got {values!r}") from None
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise GradinvError(f"{name} must be integers >= {low}, got {v!r}")
    return ids


def _out_dir(out_dir: str, overwrite: bool) -> str:
    """Checked before the first round: writable, and not holding an earlier audit."""
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise GradinvError(f"cannot write to {out_dir!r}: it is a file, not a directory")
    if os.path.isdir(out_dir) and not overwrite:
        if any(name.startswith("round-") for name in os.listdir(out_dir)):
            raise GradinvError(
                f"{out_dir!r} already holds an audit (round-*); "
                "pass overwrite=True or choose another directory"
            )
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise GradinvError(f"cannot write to {out_dir!r}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise GradinvError(f"cannot write to {out_dir!r}: permission denied")
    return out_dir


def _one(
    content: RecordDict, kind: str, preferred: str | None, where: str, needed: bool = True
) -> Any:
    """The message's ArrayRecord / ConfigRecord / MetricRecord: the one named `preferred` (the
    strategy's key), else the only one there is."""
    records = {
        "arrays": content.array_records,
        "config": content.config_records,
        "metrics": content.metric_records,
    }[kind]
    if preferred in records:
        return records[preferred]
    if len(records) == 1:
        return next(iter(records.values()))
    if not records and not needed:
        return None
    raise GradinvError(
        f"{where}: expected one {kind} record in the message, found {sorted(records) or 'none'}"
    )


def _tensors(record: ArrayRecord) -> dict[str, torch.Tensor]:
    # clone: Flower's arrays are views of its own buffers
    return {k: v.clone() for k, v in record.to_torch_state_dict().items()}
