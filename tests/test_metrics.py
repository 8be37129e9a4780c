"""The scores the studio reports, on cases whose answer is known."""

import numpy as np
import pytest

from mnist_models import metrics


def test_frechet_distance_of_identical_sets_is_zero_and_grows_with_a_shift():
    features = np.random.default_rng(0).normal(size=(2000, 16))
    assert metrics.frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    shifted = features + 1.0  # the means move by 1 in each of 16 dimensions: distance 16
    assert metrics.frechet_distance(features, shifted) == pytest.approx(16, rel=1e-3)


def test_inception_score_bounds():
    sure_and_balanced = np.eye(10)[np.arange(1000) % 10]
    assert metrics.inception_score(sure_and_balanced) == pytest.approx(10, rel=1e-3)
    one_class = np.eye(10)[np.zeros(1000, int)]
    assert metrics.inception_score(one_class) == pytest.approx(1, rel=1e-3)
    unsure = np.full((1000, 10), 0.1)
    assert metrics.inception_score(unsure) == pytest.approx(1, rel=1e-3)


def test_psnr_and_ssim_of_known_pairs():
    rng = np.random.default_rng(1)
    image = rng.random((4, 28, 28)).astype(np.float32)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    off = np.clip(image + 0.1, 0, 1)
    mse = float(np.mean((off - image) ** 2))
    assert metrics.psnr(off, image) == pytest.approx(10 * np.log10(1 / mse), rel=1e-3)
    assert metrics.ssim(rng.random((4, 28, 28)), image) < 0.2  # unrelated noise
