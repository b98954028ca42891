"""Train a generator once per recipe and reuse it: experiments and tests call `cached_generator`
and only the first call (per machine, or per CI run) pays for the training."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

from .store import JSON, VERSION
from .train import train_generator


def cache_root() -> str:
    """$GRADINV_CACHE/generators, else $XDG_CACHE_HOME/gradinv/generators, else
    ~/.cache/gradinv/generators."""
    root = os.environ.get("GRADINV_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "gradinv")
    return os.path.join(root, "generators")


def recipe_hash(recipe: dict[str, Any]) -> str:
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive lock so two processes (e.g. parallel test workers) never train one recipe
    into one directory at the same time; the second waits and then reuses the result."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, training is still correct if not concurrent
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_generator(
    data_spec: str,
    channels: int,
    image_size: int,
    epochs: int,
    seed: int = 0,
    cache_dir: str | None = None,
    kind: str = "dcgan",
    progress: bool = False,
    **options: Any,
) -> str:
    """The directory of a generator trained with this recipe, training it on the first call.

    The directory is `<cache_dir or cache_root()>/<16 hex digits of the recipe's sha256>`; the
    recipe is every argument except `progress` and the `threads` option. An interrupted training
    resumes on the next call.
    """
    recipe = {
        "version": VERSION,
        "data": data_spec,
        "channels": channels,
        "image_size": image_size,
        "kind": kind,
        "epochs": epochs,
        "seed": seed,
        "options": {k: v for k, v in sorted(options.items()) if k != "threads"},
    }
    root = cache_dir or cache_root()
    directory = os.path.join(root, recipe_hash(recipe))
    if os.path.isfile(os.path.join(directory, JSON)):
        return directory
    os.makedirs(root, exist_ok=True)
    with _locked(directory + ".lock"):
        if not os.path.isfile(os.path.join(directory, JSON)):
            train_generator(
                data_spec, channels, image_size, kind, epochs, seed, directory, progress, **options
            )
    return directory
