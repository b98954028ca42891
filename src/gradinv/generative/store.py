"""A trained generator on disk: `generator.json` (architecture, constructor arguments, data, training
record) beside `generator.safetensors` (the state_dict). Never pickle."""

from __future__ import annotations

import os
from typing import Any

from ..errors import GradinvError
from .custom import load_custom
from .files import load_weights, read_json, read_tensors, sha256_file, write_json, write_tensors
from .generator import Generator
from .kinds import KINDS, build_generator

FORMAT = "gradinv-generator"
VERSION = 1
JSON, WEIGHTS = "generator.json", "generator.safetensors"


def describe(kind: str, kwargs: dict[str, Any], generator: Generator) -> dict[str, Any]:
    """The architecture part of generator.json."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "class": type(generator).__name__,
        "kwargs": dict(kwargs),
        "latent_dim": generator.latent_dim,
        "output_shape": list(generator.output_shape),
        "num_stages": generator.num_stages,
        "parameters": sum(p.numel() for p in generator.parameters()),
    }


def save_generator(
    generator: Generator, directory: str, kind: str, kwargs: dict[str, Any], **record: Any
) -> str:
    """Write the weights, then the JSON (last: its presence marks a finished generator)."""
    os.makedirs(directory, exist_ok=True)
    weights = os.path.join(directory, WEIGHTS)
    write_tensors(weights, generator.state_dict(), metadata={"format": FORMAT})
    data = describe(kind, kwargs, generator) | {"weights_sha256": sha256_file(weights)} | record
    write_json(os.path.join(directory, JSON), data)
    return directory


def read_record(directory: str) -> dict[str, Any]:
    """generator.json of a generator directory, with one-line errors for what is missing."""
    if not os.path.isdir(directory):
        raise GradinvError(f"generator directory not found: {directory}")
    if not os.path.isfile(os.path.join(directory, JSON)):
        raise GradinvError(
            f"{directory} holds no {JSON}: not a finished generator "
            "(train one with `gradinv train-generator`)"
        )
    return read_json(os.path.join(directory, JSON))


def load_generator(directory: str) -> Generator:
    """The generator saved in `directory`, in eval mode, with its JSON record as `.record`."""
    record = read_record(directory)
    kind = record.get("kind")
    if kind == "custom":
        gen: Generator = load_custom(directory, record)
    else:
        if not isinstance(kind, str) or kind not in KINDS:
            raise GradinvError(
                f"{directory}/{JSON}: unknown generator kind {kind!r}; "
                f"choose from: {', '.join([*KINDS.names(), 'custom'])}"
            )
        kwargs = record.get("kwargs")
        if not isinstance(kwargs, dict):
            raise GradinvError(f"{directory}/{JSON}: 'kwargs' must be an object")
        gen = build_generator(kind, **kwargs)
        weights = os.path.join(directory, WEIGHTS)
        tensors = read_tensors(weights)
        expected = record.get("weights_sha256")
        if expected and sha256_file(weights) != expected:
            raise GradinvError(
                f"{weights} does not match the checksum in {JSON} (corrupt or replaced)"
            )
        load_weights(gen, tensors, weights)
        shape = record.get("output_shape")
        if shape is not None and list(shape) != list(gen.output_shape):
            raise GradinvError(
                f"{directory}/{JSON}: output_shape {shape} disagrees with the architecture's "
                f"{list(gen.output_shape)}"
            )
    gen.record = record
    return gen.eval()
