"""Photos of digits on paper, made here: MNIST test digits and printed digits (the machine's fonts) as ink on
synthetic paper under the conditions people photograph in: uneven lamp light, a shadow band, ruled and squared
paper, pencil, blue ballpoint, a slightly rotated page, JPEG. Seeded, so the set is the same on every run.

`python -m mnist_models evaluate photos --json` scores the CNN and the CapsNet on it, per condition.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CONDITIONS = ("flat", "uneven_light", "shadow_band", "ruled", "squared", "pencil", "blue_ink", "rotated", "jpeg")
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
WIDTH, HEIGHT = 360, 480  # a phone photo, scaled down
PAPER = np.array([236, 233, 224], np.float32)  # off-white
BLACK_INK = np.array([28, 28, 34], np.float32)


class Photo(NamedTuple):
    jpeg_or_png: bytes  # the file a person would upload
    label: int
    source: str  # "mnist" or the font's file name
    condition: str


def fonts() -> list[Path]:
    """The machine's TrueType/OpenType fonts (DejaVu and Liberation on Debian with chromium), sorted."""
    found = {p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf")}
    return sorted(found, key=lambda p: p.name)


def _printed(digit: int, font: Path, height: int) -> np.ndarray:
    """A digit typed in `font`, as ink strength (H, W) in [0, 1]."""
    face = ImageFont.truetype(str(font), size=height)
    left, top, right, bottom = face.getbbox(str(digit))
    canvas = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), str(digit), fill=255, font=face)
    return np.asarray(canvas, np.float32) / 255.0


def _handwritten(image: np.ndarray, height: int) -> np.ndarray:
    """An MNIST digit scaled up to `height` pixels, as ink strength."""
    big = Image.fromarray(image).resize((height, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(big, np.float32) / 255.0, 0, 1)


def _paper(rng: np.random.Generator) -> np.ndarray:
    grain = rng.normal(0, 3.0, (HEIGHT, WIDTH, 1)).astype(np.float32)
    return np.clip(PAPER + grain, 0, 255)


def _lines(rgb: np.ndarray, rng: np.random.Generator, vertical: bool, spacing: int) -> None:
    colour = np.array([150, 175, 215], np.float32)  # light blue ruling
    offset = int(rng.integers(spacing))
    for y in range(offset, HEIGHT, spacing):
        rgb[y:y + 2] = rgb[y:y + 2] * 0.35 + colour * 0.65
    if vertical:
        for x in range(offset, WIDTH, spacing):
            rgb[:, x:x + 2] = rgb[:, x:x + 2] * 0.35 + colour * 0.65


def render(ink: np.ndarray, condition: str, rng: np.random.Generator) -> bytes:
    """Ink strength (h, w) → a photo file of that ink on paper under `condition`."""
    rgb = _paper(rng)
    if condition == "ruled":
        _lines(rgb, rng, vertical=False, spacing=int(rng.integers(36, 48)))
    elif condition == "squared":
        _lines(rgb, rng, vertical=True, spacing=int(rng.integers(24, 34)))
    colour, strength = BLACK_INK, 0.95
    if condition == "pencil":
        colour, strength = np.array([95, 95, 100], np.float32), 0.75
        ink = ink * (rng.random(ink.shape) > 0.25)  # graphite leaves gaps on the paper's grain
        ink = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1)),
                         np.float32) / 255.0
    elif condition == "blue_ink":
        colour = np.array([25, 45, 150], np.float32)
    h, w = ink.shape
    top = int(rng.integers(HEIGHT // 2 - h // 2 - 45, HEIGHT // 2 - h // 2 + 45))
    left = int(rng.integers(WIDTH // 2 - w // 2 - 45, WIDTH // 2 - w // 2 + 45))
    top, left = int(np.clip(top, 0, HEIGHT - h)), int(np.clip(left, 0, WIDTH - w))  # ink larger than usual
    alpha = (strength * ink)[..., None]
    region = rgb[top:top + h, left:left + w]
    rgb[top:top + h, left:left + w] = region * (1 - alpha) + colour * alpha

    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    light = np.ones((HEIGHT, WIDTH), np.float32)
    if condition in ("uneven_light", "jpeg", "rotated"):  # a desk lamp on one side, and vignetting
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * (xx / WIDTH - 0.5) + np.sin(angle) * (yy / HEIGHT - 0.5)) + 0.5
        light *= 1.0 - 0.5 * np.clip(ramp, 0, 1)
        light *= 1.0 - 0.25 * (((xx / WIDTH - 0.5) ** 2 + (yy / HEIGHT - 0.5) ** 2) * 2)
    if condition == "shadow_band":  # the shadow of a hand or a phone across the page
        slope, at = rng.uniform(-0.6, 0.6), rng.uniform(0.25, 0.75) * WIDTH
        distance = (xx - at - slope * (yy - HEIGHT / 2)) / np.sqrt(1 + slope ** 2)
        band = 1.0 / (1.0 + np.exp(-(70 - np.abs(distance)) / 5.0))  # a 140-px band with soft edges
        light *= 1.0 - 0.5 * band
    photo = Image.fromarray(np.clip(rgb * light[..., None], 0, 255).astype(np.uint8))
    if condition == "rotated":
        photo = photo.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, expand=False,
                             fillcolor=tuple(int(v * 0.6) for v in PAPER))
    buffer = io.BytesIO()
    if condition in ("jpeg", "rotated"):
        photo.save(buffer, "JPEG", quality=int(rng.integers(35, 60)))
    else:
        photo.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def photo_set(x_test: np.ndarray, y_test: np.ndarray, mnist_per_condition: int = 100,
              font_files: list[Path] | None = None, conditions=CONDITIONS, seed: int = 22) -> list[Photo]:
    """For each condition: the first `mnist_per_condition` MNIST test digits and the ten digits in every font."""
    font_files = fonts() if font_files is None else font_files
    photos = []
    for c_index, condition in enumerate(conditions):
        rng = np.random.default_rng([seed, c_index])
        for i in range(mnist_per_condition):
            ink = _handwritten(x_test[i], int(rng.integers(110, 240)))
            photos.append(Photo(render(ink, condition, rng), int(y_test[i]), "mnist", condition))
        for font in font_files:
            for digit in range(10):
                ink = _printed(digit, font, int(rng.integers(100, 220)))
                photos.append(Photo(render(ink, condition, rng), digit, font.name, condition))
    return photos


def accuracy_by_condition(models: dict, photos: list[Photo], to_mnist) -> dict:
    """{model: {condition: accuracy}} plus, per condition, the share of photos where no digit was found."""
    from .preprocess import PreprocessError

    inputs, labels, conditions, failed = [], [], [], {}
    for photo in photos:
        try:
            inputs.append(to_mnist(photo.jpeg_or_png))
        except PreprocessError:
            inputs.append(np.zeros((28, 28), np.float32))  # counted as wrong
            failed[photo.condition] = failed.get(photo.condition, 0) + 1
        labels.append(photo.label)
        conditions.append(photo.condition)
    images, labels, conditions = np.stack(inputs), np.array(labels), np.array(conditions)
    result = {}
    for name, model in models.items():
        right = model.classify(images).argmax(1) == labels
        result[name] = {c: round(float(right[conditions == c].mean()), 4) for c in dict.fromkeys(conditions)}
    result["no_digit_found"] = {c: failed.get(c, 0) for c in dict.fromkeys(conditions)}
    result["photos_per_condition"] = int(np.mean([np.sum(conditions == c) for c in set(conditions)]))
    return result
