"""`@train` / `@test` splits, disjoint by content.

Datasets with official splits (fashion-mnist, cifar10) use them. The others (sample, digits, lfw,
folder, flowers17) get a deterministic 80/20 split: per class, a seeded permutation puts round(20 %)
of the images in `@test`. In both cases `@test` never holds an image whose content hash (sha256 of
its native pixels) occurs in `@train`: an official test image duplicated in train is dropped from
`@test`; an 80/20 test image duplicated in train moves to `@train`. Without a suffix a spec means
the whole dataset, with the indices it always had.
"""

from __future__ import annotations

import numpy as np

from ..errors import GradinvError
from .dataset import ImageDataset
from .mixture import PREFIX, has_test_part, is_mixture, mixture_parts, mixture_split

SPLITS = ("train", "test")
SPLIT_SEED = 20240917  # fixed forever: changing it would change every @train/@test
TEST_FRACTION = 0.2


def parse_split(spec: str) -> tuple[str, str | None]:
    """'NAME[:ARG][@train|@test]' -> ('NAME[:ARG]', split or None). An '@' followed by anything
    else stays part of the spec (a directory may contain '@')."""
    if is_mixture(spec):  # its components carry the splits; any @test part makes it "test"
        return spec, "test" if has_test_part(spec) else mixture_split(spec)
    base, at, suffix = spec.rpartition("@")
    if at and suffix in SPLITS:
        return base, suffix
    if at and ":" not in spec:
        raise GradinvError(f"dataset {spec!r}: unknown split {suffix!r}; use @train or @test")
    return spec, None


def with_split(spec: str, split: str | None) -> str:
    """The spec with its split suffix replaced by `split` (None: no suffix); a mixture's
    components each get it."""
    if is_mixture(spec):
        parts = [
            with_split(name, split) + (f"*{k}" if k > 1 else "") for name, k in mixture_parts(spec)
        ]
        return PREFIX + "+".join(parts)
    base, _ = parse_split(spec)
    return f"{base}@{split}" if split else base


def eighty_twenty(dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of the deterministic stratified 80/20 split, disjoint by content."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = []
    for c in range(dataset.num_classes):
        members = np.flatnonzero(dataset.labels == c)
        test.extend(rng.permutation(members)[: int(round(TEST_FRACTION * len(members)))])
    is_test = np.zeros(len(dataset), dtype=bool)
    is_test[np.asarray(test, dtype=np.int64)] = True
    hashes = dataset.content_hashes()
    seen = {h for h, t in zip(hashes, is_test, strict=True) if not t}
    for i in np.flatnonzero(is_test):
        if hashes[i] in seen:  # an exact duplicate of a training image: keep it out of @test
            is_test[i] = False
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def split_dataset(dataset: ImageDataset, split: str) -> ImageDataset:
    """The `split` part of a dataset without an official split."""
    train, test = eighty_twenty(dataset)
    return dataset.subset(train if split == "train" else test, split, f"{dataset.spec}@{split}")


def unseen(test: ImageDataset, train: ImageDataset) -> ImageDataset:
    """An official test split without the images whose content also occurs in the train split."""
    seen = set(train.content_hashes())
    keep = [i for i, h in enumerate(test.content_hashes()) if h not in seen]
    return test.subset(keep, "test", f"{test.spec}@test")
