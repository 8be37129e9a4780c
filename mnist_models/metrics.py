"""Image-quality metrics on float images (N, 28, 28) in [0, 1]: per-image PSNR and SSIM, averaged."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

MAX_PSNR = 100.0  # a perfect copy has infinite PSNR; cap it so averages stay finite


def psnr_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=(-2, -1))
    with np.errstate(divide="ignore"):
        return np.minimum(10.0 * np.log10(1.0 / mse), MAX_PSNR)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-image PSNR in dB (data range 1)."""
    return float(np.mean(psnr_per_image(a, b)))


def ssim_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64).reshape(-1, 28, 28), np.asarray(b, np.float64).reshape(-1, 28, 28)
    return np.array([structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b, strict=True)])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-image SSIM (scikit-image, 7×7 window, data range 1)."""
    return float(np.mean(ssim_per_image(a, b)))
