"""Train a model for a few epochs: attacks behave differently on trained models, and users ask."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import ImageDataset
from ..errors import GradinvError


def train_model(
    model: nn.Module,
    dataset: ImageDataset,
    epochs: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    max_images: int = 5000,
    exclude: Sequence[int] = (),
    progress: bool = True,
) -> nn.Module:
    """Adam on cross-entropy over (at most `max_images` of) the dataset, excluding the private
    batch's indices. Returns the model in eval mode; runs on the model's device and dtype."""
    if epochs < 0:
        raise GradinvError(f"train epochs must be >= 0, got {epochs}")
    if epochs == 0:
        return model
    p = next(model.parameters())
    rng = np.random.default_rng(seed)
    pool = np.setdiff1d(np.arange(len(dataset)), np.asarray(exclude, dtype=np.int64))
    pool = rng.permutation(pool)[:max_images]
    x_all = dataset.load(pool.tolist(), image_size).to(p.device, p.dtype)
    y_all = torch.as_tensor(dataset.labels[pool], device=p.device)
    m = torch.tensor(mean, device=p.device, dtype=p.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=p.device, dtype=p.dtype).view(1, -1, 1, 1)
    x_all = (x_all - m) / s
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    bar = tqdm(range(epochs), desc="training", disable=not progress, leave=False)
    for _ in bar:
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size].to(p.device)
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()
