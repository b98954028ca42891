"""Options shared by every command that simulates a client round (`attack`, `labels`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..models import parse_option
from ..options import key_values

# (flag, click keyword arguments); defaults can be overridden per command.
ROUND_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--model", dict(type=str, default="lenet", help="model name (see `gradinv list`)")),
    ("--model-opt", dict(multiple=True, help="model option KEY=VALUE (repeatable)")),
    ("--data", dict(type=str, default="sample", help="dataset spec, e.g. sample, digits@test, cifar10:DIR@test")),
    ("--channels", dict(type=int, default=None, help="convert the data to 1 or 3 channels (default: as stored)")),
    ("--batch-size", dict(type=int, default=1, help="client batch size")),
    ("--clients", dict(type=int, default=1, help="K clients with their own batches; the server sees the aggregate")),
    ("--composition", dict(type=str, default="unique", help="unique | random | same | repeat:K")),
    ("--share-batch-size/--no-share-batch-size", dict(default=True, help="whether the server is told the batch size")),
    ("--image-size", dict(type=int, default=32, help="images are resized to SIZE x SIZE")),
    ("--seed", dict(type=int, default=0, help="seed of the private batch and the attack")),
    ("--model-seed", dict(type=int, default=0, help="seed of the model's initialisation")),
    ("--dtype", dict(type=str, default="float32", help="float32 | float64")),
    ("--device", dict(type=str, default="auto", help="auto | cpu | cuda")),
    ("--protocol", dict(type=str, default="fedsgd", help="fedsgd | fedavg")),
    ("--local-epochs", dict(type=int, default=1, help="FedAvg local epochs")),
    ("--local-lr", dict(type=float, default=0.01, help="FedAvg local learning rate")),
    ("--local-batch-size", dict(type=int, default=None, help="FedAvg local batch size (default: whole batch)")),
    ("--loss", dict(type=str, default="ce", help="the client's training loss: ce | mse | file.py:function")),
    ("--defense", dict(multiple=True, help="client-side defense NAME[:KEY=VALUE,...] (repeatable, applied in order)")),
    ("--secure-aggregation/--no-secure-aggregation", dict(default=False, help="with --clients K: the server sees only the sum")),
    ("--threads", dict(type=int, default=None, help="torch threads (default: GRADINV_THREADS, else torch's; 1 under CI)")),
    ("--train-epochs", dict(type=int, default=0, help="train the model for N epochs before the round")),
    ("--normalize/--no-normalize", dict(default=True, help="clients normalise inputs with the dataset's mean/std")),
]  # fmt: skip

ROUND_KEYS = [flag.split("/")[0][2:].replace("-", "_") for flag, _ in ROUND_OPTIONS]

__all__ = ["ROUND_KEYS", "ROUND_OPTIONS", "key_values", "round_config", "round_options"]


def round_options(**defaults: Any) -> Callable[[Callable], Callable]:
    """Decorator adding the client-round options; keyword arguments override their defaults."""

    def decorate(command: Callable) -> Callable:
        for (flag, kwargs), key in reversed(list(zip(ROUND_OPTIONS, ROUND_KEYS, strict=True))):
            kwargs = {**kwargs, "show_default": "multiple" not in kwargs}
            if key in defaults:
                kwargs["default"] = defaults[key]
            command = click.option(flag, **kwargs)(command)
        return command

    return decorate


def round_config(params: dict[str, Any]) -> dict[str, Any]:
    """RunConfig fields from the parsed client-round options (model options typed by the model)."""
    fields = {k: params[k] for k in ROUND_KEYS if k not in ("model_opt", "defense")}
    fields["defenses"] = list(params["defense"])
    model = params["model"]
    pairs = key_values(params["model_opt"], "model option")
    fields["model_options"] = {k: parse_option(model, k, v) for k, v in pairs.items()}
    return fields
