"""results.jsonl: one JSON line per finished cell, appended by the driver only.

A line is `{"cell", "config", "metrics"}` or `{"cell", "config", "error"}`. Each line is written
with one `write` on an O_APPEND descriptor and fsynced, so a crash leaves at most a torn last line,
which readers skip. A cell may appear more than once (a failed cell is retried on --resume): the
last line wins.
"""

from __future__ import annotations

import json
import os
from typing import Any

RESULTS = "results.jsonl"


def _jsonable(value: Any) -> Any:
    """numpy/torch scalars and arrays a cell function may return, as plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(record: dict[str, Any]) -> str:
    return json.dumps(record, default=_jsonable, allow_nan=True)


def append_record(path: str, record: dict[str, Any]) -> None:
    """Append one record as one line, durably."""
    data = (encode(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size and _last_byte(path) != b"\n":
            data = b"\n" + data  # a crash tore the previous line: never glue onto it
        written = os.write(fd, data)
        while written < len(data):  # regular files only write short on a full disk; keep going
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_byte(path: str) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def read_records(path: str) -> list[dict[str, Any]]:
    """Every well-formed line, in file order (a torn line from a crash is skipped)."""
    if os.path.isdir(path):
        path = os.path.join(path, RESULTS)
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "cell" in record:
                out.append(record)
    return out


def read_results(path: str) -> dict[str, dict[str, Any]]:
    """The latest record of each cell: {cell ID: record}. `path` is results.jsonl or its sweep
    directory."""
    return {r["cell"]: r for r in read_records(path)}


def succeeded(record: dict[str, Any] | None) -> bool:
    return record is not None and "metrics" in record
