import numpy as np
import pytest
import torch

from gradinv.errors import GradinvError
from gradinv.metrics import evaluate, label_accuracy, match, psnr, ssim


def test_psnr_known_value_in_unit_range():
    truth = torch.zeros(1, 3, 8, 8)
    recon = truth + 0.1  # MSE 0.01 -> 20 dB
    assert psnr(recon, truth)[0] == pytest.approx(20.0)
    assert ssim(truth + 0.5, truth + 0.5)[0] == pytest.approx(1.0)


def test_hungarian_matching_recovers_a_permutation(sample_data):
    truth = sample_data.load([0, 70, 140, 210], 16)
    perm = torch.tensor([2, 0, 3, 1])
    recon = truth[perm]
    order = match(recon, truth)
    assert torch.equal(recon[torch.as_tensor(order)], truth)
    scores = evaluate(recon, truth)
    assert min(scores["psnr_per_image"]) > 200 and scores["ssim"] == pytest.approx(1.0)


def test_label_accuracy_is_multiset_overlap():
    assert label_accuracy([1, 1, 2, 3], [1, 2, 2, 3]) == 0.75
    assert label_accuracy(torch.tensor([5, 5]), torch.tensor([5, 5])) == 1.0


def test_shape_mismatch_is_clear():
    with pytest.raises(GradinvError, match="differ"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(2, 3, 8, 8))
    assert np.isfinite(ssim(torch.rand(1, 1, 5, 5), torch.rand(1, 1, 5, 5))).all()


def test_ssim_is_the_gaussian_window_ssim_of_wang_et_al(sample_data):
    """11×11 Gaussian window, σ = 1.5, population covariance, data range 1 — as scikit-image
    computes it channel by channel (and not its default uniform 7×7 window)."""
    from skimage.metrics import structural_similarity

    truth = sample_data.load([0, 70], 32)
    noisy = truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    noisy = noisy.clamp(0, 1)
    ours = ssim(noisy, truth)
    for i in range(2):
        per_channel = [
            structural_similarity(noisy[i, c].double().numpy(), truth[i, c].double().numpy(),
                                  gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=1.0)
            for c in range(3)
        ]  # fmt: skip
        assert ours[i] == pytest.approx(np.mean(per_channel), abs=1e-4)
    uniform = structural_similarity(noisy[0].numpy(), truth[0].numpy(), data_range=1.0,
                                    channel_axis=0, win_size=7)  # fmt: skip
    assert abs(uniform - ours[0]) > 1e-3  # the window matters: not the old default
