"""Bias-corrected counting: n_c = B·(p̄_c − ∇b_c), with the batch-mean probability p̄ estimated
from the model's outputs on dummy inputs (the offset of LLG+ / the counting rule of Geng et al.).

Geng et al., "Towards General Deep Leakage in Federated Learning", arXiv 2021; Wainakh et al.
(LLG+), PETS 2022.

    >>> from gradinv.labels import recover_labels
    >>> obs = observe(model, images, labels)
    >>> recover_labels(obs, "bias-corrected")        # B labels (a multiset), sorted
"""

from __future__ import annotations

import torch

from ..fl import Observation
from .common import (
    check_batch_size,
    classifier,
    dummy_embeddings,
    greedy_labels,
    last_layer_signal,
)


def bias_corrected(observation: Observation, batch_size: int) -> torch.Tensor:
    """Greedy on r_c = ∇b_c − p̄_c (= −n_c/B when p̄ is right): every class with ∇b_c < 0 once,
    then repeatedly the argmin class, adding 1/B to the class just chosen. Without a bias, ∇b is
    estimated as ∇W·ā/‖ā‖² with ā the mean dummy embedding."""
    check_batch_size(batch_size, "bias-corrected")
    signal = last_layer_signal(observation, batch_size)
    weight, bias = classifier(observation, signal)
    emb = dummy_embeddings(observation, signal)
    p_bar = torch.softmax(emb @ weight.T + bias, dim=1).mean(0)
    if signal.bias is not None:
        grad_b = signal.bias
    else:
        mean = emb.mean(0)
        grad_b = signal.weight @ mean / mean.dot(mean).clamp_min(1e-300)
    return greedy_labels(grad_b - p_bar, grad_b < 0, batch_size, 1 / batch_size)
