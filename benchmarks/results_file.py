"""The before/after benchmarks write one JSON file with a section per checkout label: each run
merges its own section in and keeps the others."""

from __future__ import annotations

import json
from typing import Any


def merge_section(path: str, command: str, label: str, section: dict[str, Any]) -> None:
    """Set `path`'s `command` and merge `section` into its `label` entry (created if missing)."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        data = {}
    data["command"] = command
    data.setdefault(label, {}).update(section)
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)
