"""Files written beside each saved observation: capture.json (where the update came from) and,
when an attack ran, reconstruction.png / .json / .safetensors. No ground truth exists here, so
nothing is scored: the JSON holds what the server itself can judge (the matching loss)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from safetensors.torch import save_file

from ...fl import Protocol
from ...pipeline import jsonable
from ...report import grid_image
from .capture import RoundFacts

if TYPE_CHECKING:
    from .audit import AuditRecord


def save_capture(
    directory: str,
    server_round: int,
    node: int,
    facts: RoundFacts,
    protocol: Protocol,
    config: dict[str, Any],
) -> None:
    """capture.json: the round, the node, the facts the protocol was read from."""
    meta = {
        "round": server_round,
        "node_id": node,
        "num_examples": facts.num_examples,
        "lr": facts.lr,
        "local_epochs": facts.local_epochs,
        "batch_size": facts.batch_size,
        "protocol": protocol.to_dict(),
        "update": "gradient (θ_global − θ_new) / lr"
        if protocol.kind == "fedsgd"
        else "weight delta θ_new − θ_global",
        "train_config": {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str))},
    }
    with open(os.path.join(directory, "capture.json"), "w") as fh:
        json.dump(meta, fh, indent=2, ensure_ascii=False)


def save_reconstruction(record: AuditRecord, attack: str) -> None:
    """reconstruction.json always (with the error when the attack failed); the images as a PNG
    grid and as exact float tensors (safetensors) when there are any."""
    rec = record.reconstruction
    meta: dict[str, Any] = {
        "attack": attack,
        "round": record.round,
        "node_id": record.node_id,
        "time_s": record.time_s,
        "error": record.error,
    }
    if rec is not None:
        meta |= {
            "matching_loss": record.matching_loss,
            "matching_distance": "cosine",
            "final_attack_loss": rec.loss_history[-1] if rec.loss_history else None,
            "iterations": len(rec.loss_history) or None,
            "labels": None if rec.labels is None else [int(v) for v in rec.labels],
            "info": jsonable(rec.info),
        }
        tensors = {"images": rec.images.detach().cpu().contiguous()}
        if rec.labels is not None:
            tensors["labels"] = rec.labels.detach().cpu().contiguous()
        save_file(tensors, os.path.join(record.directory, "reconstruction.safetensors"))
        grid_image(rec.images, scale=3).save(os.path.join(record.directory, "reconstruction.png"))
    with open(os.path.join(record.directory, "reconstruction.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
