"""A trained inverter on disk: `inverter.json` (architecture, the model and deployment it was
trained for, data, training record) beside `inverter.safetensors` (the network's state_dict,
including its fixed input maps). Never pickle."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ..errors import GradinvError
from ..generative.files import (
    load_weights,
    read_json,
    read_tensors,
    sha256_file,
    write_json,
    write_tensors,
)
from .network import Inverter

FORMAT = "gradinv-inverter"
VERSION = 1
JSON, WEIGHTS = "inverter.json", "inverter.safetensors"
CHECKPOINT = ("checkpoint.json", "checkpoint.safetensors")
_LOADED: dict[tuple[str, int, int], Inverter] = {}  # path, mtime, size -> network (read once)


def architecture(net: Inverter, hidden: list[int]) -> dict[str, Any]:
    """The constructor arguments of the network, as inverter.json stores them."""
    return {
        "size_in": net.sketch.size_in,
        "image_shape": list(net.image_shape),
        "batch_sizes": list(net.batch_sizes),
        "hidden": list(hidden),
        "sketch": net.sketch.size_out,
        "sketch_seed": net.sketch.seed,
        "head": net.head_kind,
    }


def prepare_out(out: str, overwrite: bool) -> None:
    """Refuse to replace a finished inverter unless asked; clear our files when asked."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise GradinvError(f"--out {out} exists and is not a directory")
    if os.path.isfile(os.path.join(out, JSON)) and not overwrite:
        raise GradinvError(
            f"{out} already holds a trained inverter; pass --overwrite to retrain it "
            "or choose another --out"
        )
    if overwrite:
        for name in (JSON, WEIGHTS, *CHECKPOINT):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out, name))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise GradinvError(f"cannot write to {out!r}: {exc.strerror or exc}") from None


def save_inverter(net: Inverter, directory: str, record: dict[str, Any]) -> str:
    """Weights first, then the JSON (last: its presence marks a finished inverter)."""
    os.makedirs(directory, exist_ok=True)
    weights = os.path.join(directory, WEIGHTS)
    write_tensors(weights, net.state_dict(), metadata={"format": FORMAT})
    data = {"format": FORMAT, "version": VERSION, **record, "weights_sha256": sha256_file(weights)}
    write_json(os.path.join(directory, JSON), data)
    return directory


def read_record(directory: str) -> dict[str, Any]:
    """inverter.json of an inverter directory, with one-line errors for what is missing."""
    if not os.path.isdir(directory):
        raise GradinvError(f"inverter directory not found: {directory}")
    path = os.path.join(directory, JSON)
    if not os.path.isfile(path):
        raise GradinvError(
            f"{directory} holds no {JSON}: not a finished inverter "
            "(train one with `gradinv train-inverter`)"
        )
    record = read_json(path)
    if record.get("format") != FORMAT:
        raise GradinvError(f"{path} is not a gradinv inverter (format {record.get('format')!r})")
    return record


def load_inverter(directory: str) -> Inverter:
    """The inverter saved in `directory`, in eval mode, with its JSON record as `.record`.
    Each file is read and checked once per process (the network is then reused)."""
    record = read_record(directory)
    weights = os.path.join(directory, WEIGHTS)
    try:
        st = os.stat(weights)
    except OSError:
        raise GradinvError(f"{weights} not found") from None
    key = (os.path.abspath(weights), st.st_mtime_ns, st.st_size)
    if key in _LOADED and _LOADED[key].record == record:
        return _LOADED[key]
    arch = record.get("architecture")
    if not isinstance(arch, dict):
        raise GradinvError(f"{directory}/{JSON}: 'architecture' must be an object")
    try:
        net = Inverter(**arch)
    except TypeError as exc:
        raise GradinvError(f"{directory}/{JSON}: bad architecture ({exc})") from None
    if record.get("weights_sha256") and sha256_file(weights) != record["weights_sha256"]:
        raise GradinvError(f"{weights} does not match the checksum in {JSON} (corrupt or replaced)")
    load_weights(net, read_tensors(weights), weights)
    net.record = record
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if len(_LOADED) >= 4:  # a few networks in memory: an experiment alternates between some
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[key] = net
    return net
