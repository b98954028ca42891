"""Train an inverter once per recipe and reuse it: experiments and tests call `cached_inverter`
and only the first call (per machine, or per CI run) pays for the training."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..generative.cache import _locked, cache_root, recipe_hash
from .store import JSON, VERSION
from .train import train_inverter


def inverter_cache_root() -> str:
    """$GRADINV_CACHE/inverters, else $XDG_CACHE_HOME/gradinv/inverters, else
    ~/.cache/gradinv/inverters (beside the generators)."""
    return os.path.join(os.path.dirname(cache_root()), "inverters")


def cached_inverter(
    model: str = "lenet",
    data: str = "fashion-mnist@train",
    channels: int = 1,
    image_size: int = 28,
    batch_sizes: Sequence[int] = (1,),
    defenses: Sequence[str] = (),
    epochs: int = 10,
    seed: int = 0,
    model_seed: int = 0,
    model_options: dict[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    train: bool = True,
    **options: Any,
) -> str:
    """The directory of an inverter trained with this recipe, training it on the first call
    (with `train=False`, only the directory: it may not hold an inverter yet).

    `<cache_dir or inverter_cache_root()>/<16 hex digits of the recipe's sha256>`; the recipe is
    every argument except `cache_dir`, `progress`, `train` and the `threads` option. An
    interrupted training resumes on the next call; a file lock keeps parallel processes from
    training one recipe twice."""
    recipe = {
        "version": VERSION,
        "model": model,
        "data": data,
        "channels": channels,
        "image_size": image_size,
        "batch_sizes": sorted(int(b) for b in batch_sizes),
        "defenses": list(defenses),
        "epochs": epochs,
        "seed": seed,
        "model_seed": model_seed,
        "model_options": dict(sorted((model_options or {}).items())),
        "mean": None if mean is None else [float(v) for v in mean],
        "std": None if std is None else [float(v) for v in std],
        "options": {k: v for k, v in sorted(options.items()) if k != "threads"},
    }
    root = cache_dir or inverter_cache_root()
    directory = os.path.join(root, recipe_hash(recipe))
    if not train or os.path.isfile(os.path.join(directory, JSON)):
        return directory
    os.makedirs(root, exist_ok=True)
    with _locked(directory + ".lock"):
        if not os.path.isfile(os.path.join(directory, JSON)):
            train_inverter(
                model, data, channels, image_size, batch_sizes, list(defenses), epochs, seed,
                directory, model_seed, model_options, mean, std, progress, **options,
            )  # fmt: skip
    return directory
