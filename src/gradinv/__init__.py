"""gradinv: measure how much federated-learning updates leak through gradient inversion.

    from gradinv import load_dataset, sample_batch, build_model, observe, make_attack, evaluate
    data = load_dataset("sample")
    images, labels = sample_batch(data, batch_size=1, seed=0)
    model = build_model("mlp4", (3, 32, 32), data.num_classes)
    observation = observe(model, images, labels, share_labels=True)   # what the server sees
    reconstruction = make_attack("dlg", iterations=20).reconstruct(observation)
    print(evaluate(reconstruction.images, images)["psnr"])

Names are imported lazily: `import gradinv` is instant, torch loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "ATTACKS": "attacks",
    "Attack": "attacks",
    "Reconstruction": "attacks",
    "make_attack": "attacks",
    "load_dataset": "data",
    "sample_batch": "data",
    "GradinvError": "errors",
    "Observation": "fl",
    "Protocol": "fl",
    "aggregate": "fl",
    "observe": "fl",
    "evaluate": "metrics",
    "build_model": "models",
    "train_model": "models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradinv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
