"""Affine and stroke-thickness transforms of 28×28 digits, and the seeded robustness benchmark.

The CapsNet paper's robustness claim (trained on MNIST, tested on affNIST: CapsNet 79 % vs a CNN's 66 %) is
about affine change; these transforms let a user see it on one drawing and measure it on the test set.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .base import as_images, predict_batches, to_float

CENTRE = np.array([13.5, 13.5])  # the geometric centre of a 28×28 frame in pixel-index coordinates


@dataclasses.dataclass(frozen=True)
class Transform:
    rotation: float = 0.0  # degrees, counter-clockwise
    scale: float = 1.0
    shift_x: float = 0.0  # pixels, right
    shift_y: float = 0.0  # pixels, down
    shear: float = 0.0  # horizontal shear factor
    stretch_x: float = 1.0  # horizontal scale on top of `scale` (affNIST scales each axis on its own)
    thickness: int = 0  # > 0 thickens strokes by that many pixels, < 0 thins them

    def is_identity(self) -> bool:
        return self == Transform()


def _matrix(t: Transform) -> np.ndarray:
    """Forward map (row, col) → (row, col) about the frame's centre."""
    angle = np.deg2rad(t.rotation)
    rotate = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    shear = np.array([[1.0, 0.0], [t.shear, 1.0]])
    return t.scale * rotate @ shear @ np.diag([1.0, t.stretch_x])


def apply(images: np.ndarray, t: Transform) -> np.ndarray:
    """Transform a batch (N, 28, 28) in [0, 1]; the identity returns the images unchanged."""
    batch = as_images(images)
    if t.is_identity():
        return batch.copy()
    out = np.empty_like(batch)
    forward = _matrix(t)
    inverse = np.linalg.inv(forward)
    offset = CENTRE - inverse @ (CENTRE + np.array([t.shift_y, t.shift_x]))
    for i, image in enumerate(batch):
        moved = ndimage.affine_transform(image, inverse, offset=offset, order=1, mode="constant", cval=0.0) \
            if not np.allclose(forward, np.eye(2)) or t.shift_x or t.shift_y else image
        out[i] = _thickness(moved, t.thickness)
    return np.clip(out, 0.0, 1.0)


def _thickness(image: np.ndarray, pixels: int) -> np.ndarray:
    if pixels == 0:
        return image
    size = 1 + 2 * abs(pixels)
    footprint = np.ones((size, size), bool)
    morph = ndimage.grey_dilation if pixels > 0 else ndimage.grey_erosion
    return morph(image, footprint=footprint)


# --- the sweep and the benchmark -------------------------------------------------------------------------

SWEEPS = {  # slider name → (range of values, how a value becomes a Transform)
    "rotation": (np.linspace(-60, 60, 25), lambda v: Transform(rotation=float(v))),
    "scale": (np.linspace(0.5, 1.5, 21), lambda v: Transform(scale=float(v))),
    "shift_x": (np.linspace(-8, 8, 17), lambda v: Transform(shift_x=float(v))),
    "shift_y": (np.linspace(-8, 8, 17), lambda v: Transform(shift_y=float(v))),
    "shear": (np.linspace(-0.5, 0.5, 21), lambda v: Transform(shear=float(v))),
    "thickness": (np.arange(-2, 4), lambda v: Transform(thickness=int(v))),
}


def sweep(image: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Every value of one slider applied to one image: (values, images (V, 28, 28)), ready for one batch."""
    values, make = SWEEPS[name]
    single = as_images(image)[:1]
    return values, np.concatenate([apply(single, make(v)) for v in values])


def benchmark_sets(images: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed, seeded transformed copies of `images` (the robustness benchmark's test sets)."""
    rng = np.random.default_rng(seed)
    n = len(images)
    sign = rng.choice([-1.0, 1.0], size=n)
    directions = np.array([(4, 0), (-4, 0), (0, 4), (0, -4)], float)[rng.integers(0, 4, size=n)]
    affine = [Transform(rotation=float(r), shear=float(s), scale=float(c)) for r, s, c in
              zip(rng.uniform(-20, 20, n), rng.uniform(-0.1, 0.1, n), rng.uniform(0.8, 1.2, n), strict=True)]
    # affNIST's ranges (Sabour et al. 2017 §5.2 test on it): rotation ±20°, each axis scaled 0.8–1.2 on its own,
    # shear ±0.1; its own seed, so the sets above stay as they were
    affnist_rng = np.random.default_rng([seed, 2017])
    rows, cols = affnist_rng.uniform(0.8, 1.2, n), affnist_rng.uniform(0.8, 1.2, n)
    affnist = [Transform(rotation=float(r), shear=float(s), scale=float(sy), stretch_x=float(sx / sy))
               for r, s, sy, sx in zip(affnist_rng.uniform(-20, 20, n), affnist_rng.uniform(-0.1, 0.1, n), rows, cols,
                                       strict=True)]

    def each(transforms):
        return np.concatenate([apply(images[i:i + 1], t) for i, t in enumerate(transforms)])

    return {
        "clean": as_images(images),
        "rot15": each(Transform(rotation=15 * s) for s in sign),
        "rot30": each(Transform(rotation=30 * s) for s in sign),
        "scale0.8": apply(images, Transform(scale=0.8)),
        "scale1.2": apply(images, Transform(scale=1.2)),
        "shift4": each(Transform(shift_x=dx, shift_y=dy) for dy, dx in directions),
        "affine": each(affine),
        "affnist": each(affnist),
    }


OOD_DIGITS = 2000  # test digits each out-of-distribution set is made from (each goes through the canvas path)


def robustness(models: dict, digits: np.ndarray, labels: np.ndarray, seed: int = 0,
               ood_digits: int = OOD_DIGITS) -> dict[str, dict[str, float]]:
    """Accuracy of each model on each fixed transform of the uint8 test `digits`, and on the out-of-distribution
    sets of `ood.ood_sets` made from the first `ood_digits` of them."""
    from . import ood

    sets = {name: (batch, labels) for name, batch in benchmark_sets(to_float(digits), seed).items()}
    sets.update(ood.ood_sets(digits[:ood_digits], labels[:ood_digits], seed))

    def accuracy(model, batch, truth):
        (probs,) = predict_batches(lambda b: (model.classify(b),), batch, 500)
        return float(np.mean(probs.argmax(1) == truth))

    return {name: {key: accuracy(model, *batch) for key, batch in sets.items()} for name, model in models.items()}
