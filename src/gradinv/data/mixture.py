"""`mixture:SPEC+SPEC[+...]`: several datasets as one, e.g. to train a generator on every
auxiliary training split at once. A component written `SPEC*K` is repeated K times, so a small set
is not drowned by a large one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import GradinvError
from .dataset import ImageDataset

PREFIX = "mixture:"
MAX_REPEAT = 100_000


def is_mixture(spec: str) -> bool:
    return spec.startswith(PREFIX)


def mixture_parts(spec: str) -> list[tuple[str, int]]:
    """'mixture:a@train+b@train*3' -> [('a@train', 1), ('b@train', 3)]."""
    body = spec[len(PREFIX) :]
    parts = []
    for text in body.split("+"):
        name, star, count = text.strip().rpartition("*")
        if not star:
            name, count = text.strip(), "1"
        if not name:
            raise GradinvError(f"{spec!r}: empty component; write mixture:SPEC+SPEC[*K]")
        try:
            k = int(count)
        except ValueError:
            raise GradinvError(f"{spec!r}: repeat count {count!r} is not an integer") from None
        if not 1 <= k <= MAX_REPEAT:
            raise GradinvError(f"{spec!r}: repeat count must be in [1, {MAX_REPEAT}], got {k}")
        if is_mixture(name):
            raise GradinvError(f"{spec!r}: a mixture cannot contain another mixture")
        parts.append((name, k))
    if len(parts) < 2 and parts[0][1] == 1:
        raise GradinvError(f"{spec!r}: a mixture needs at least two components (or a repeat *K)")
    return parts


def mixture_split(spec: str) -> str | None:
    """The components' common split ('train' / 'test'), None when they differ or have none."""
    from .splits import parse_split

    splits = {parse_split(name)[1] for name, _ in mixture_parts(spec)}
    return splits.pop() if len(splits) == 1 else None


def has_test_part(spec: str) -> bool:
    from .splits import parse_split

    return any(parse_split(name)[1] == "test" for name, _ in mixture_parts(spec))


def load_mixture(
    spec: str, channels: int | None, load: Callable[[str, int | None], ImageDataset]
) -> ImageDataset:
    """Concatenate the components (each opened with `load(component, channels)`); classes become
    'component/class' with labels offset per component."""
    parts = [(load(name, channels), k) for name, k in mixture_parts(spec)]
    native = {d.channels for d, _ in parts}
    if len(native) > 1:
        raise GradinvError(
            f"{spec!r} mixes {sorted(native)}-channel data: pass channels=1 or 3 (--channels)"
        )
    classes: list[str] = []
    labels, owners = [], []  # per image: (component, index inside it)
    for c, (d, k) in enumerate(parts):
        base = len(classes)
        classes += [f"{d.spec}/{name}" for name in d.classes]
        idx = np.tile(np.arange(len(d)), k)
        labels.append(d.labels[idx] + base)
        owners.append(np.stack([np.full(len(idx), c), idx], axis=1))
    table = np.concatenate(owners)
    datasets = [d for d, _ in parts]

    def loader(i: int, size: int) -> np.ndarray:
        c, j = table[i]
        return datasets[c].loader(int(j), size)

    def pixels(i: int) -> np.ndarray:
        c, j = table[i]
        own = datasets[c].pixels
        if own is None:
            raise GradinvError(f"dataset {datasets[c].spec!r} cannot hash its images")
        return own(int(j))

    return ImageDataset(
        "mixture", classes, np.concatenate(labels), native.pop(), loader, pixels,
        split=mixture_split(spec), spec=spec,
    )  # fmt: skip
