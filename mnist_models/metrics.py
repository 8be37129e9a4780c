"""Image-quality metrics: per-image PSNR and SSIM on float images (N, 28, 28) in [0, 1], and classifier-based
Fréchet distance and inception score for generated samples."""

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


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID, here on the project CNN's
    penultimate features, as TF-GAN's `mnist_frechet_distance` does with its MNIST classifier).

    ‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½), with Tr((Σa Σb)^½) from the eigenvalues of Σa^½ Σb Σa^½, which is
    symmetric, so numpy's `eigh` suffices and no complex square root appears.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sum(np.sqrt(np.clip(cross, 0, None)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def inception_score(probs: np.ndarray, splits: int = 10) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) on a classifier's softmax, averaged over `splits` chunks (as Salimans et al.):
    high when every sample is classified confidently and the classes are balanced; at most the class count."""
    probs = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    scores = []
    for chunk in np.array_split(probs, splits):
        marginal = chunk.mean(axis=0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(chunk * (np.log(chunk) - np.log(marginal)), axis=1))))
    return float(np.mean(scores))


def within_class_spread(features: np.ndarray, classes: np.ndarray) -> float:
    """Mean over classes of √trace(Σ_c), the spread of one class's feature vectors: how varied the samples of one
    class are (0 when every sample of a class is the same image)."""
    features, classes = np.asarray(features, np.float64), np.asarray(classes)
    spreads = [np.sqrt(np.trace(np.cov(features[classes == c], rowvar=False)))
               for c in np.unique(classes) if np.sum(classes == c) > 1]
    return float(np.mean(spreads))


def class_diversity(fake_features: np.ndarray, fake_classes: np.ndarray, real_features: np.ndarray,
                    real_classes: np.ndarray) -> float:
    """Within-class variety of generated images against real ones' (1: as varied as real digits; near 0: one image
    per class, a collapse that class accuracy and the inception score cannot see)."""
    return within_class_spread(fake_features, fake_classes) / within_class_spread(real_features, real_classes)


def code_purity(codes: np.ndarray, classes: np.ndarray) -> float:
    """The share of samples whose class is the most common one among the samples of their code: 1 when each
    value of an unsupervised categorical code draws a single class, about 0.1 when codes ignore the classes."""
    codes, classes = np.asarray(codes), np.asarray(classes)
    return float(sum(np.bincount(classes[codes == c]).max() for c in np.unique(codes)) / len(codes))
