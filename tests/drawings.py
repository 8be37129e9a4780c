"""Real MNIST test digits rendered the way users draw them: big canvases, off-centre, other stroke widths,
dark-on-light paper, ink in the alpha channel."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def render(digit: np.ndarray, style: str, rng: np.random.Generator, canvas: int = 280) -> np.ndarray:
    """uint8 (28, 28) MNIST digit → a user-like drawing array of `canvas`×`canvas` pixels."""
    scale = int(rng.integers(6, 10))  # the digit fills 60–100 % of the canvas width
    big = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    if style == "thick":
        big = big.filter(ImageFilter.MaxFilter(5))
    elif style == "thin":
        big = big.filter(ImageFilter.MinFilter(3))
    ink = np.zeros((canvas, canvas), np.uint8)
    room = canvas - big.size[0]
    top, left = (int(v) for v in rng.integers(0, room + 1, size=2))  # anywhere on the canvas, off-centre
    ink[top:top + big.size[1], left:left + big.size[0]] = np.asarray(big)
    if style == "alpha":  # the drawable canvas: transparent, ink only in the alpha channel
        return np.dstack([np.zeros((canvas, canvas, 3), np.uint8), ink])
    if style == "paper":  # black pen on white paper, as an RGB photo-like upload
        paper = 255 - ink
        return np.dstack([paper, paper, paper])
    return ink


STYLES = ("alpha", "paper", "thick", "thin", "plain")


def canvas_of(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit as the canvas sends it: 280×280 RGBA, white strokes on an opaque black background."""
    grey = np.kron(digit, np.ones((10, 10), np.uint8))
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
