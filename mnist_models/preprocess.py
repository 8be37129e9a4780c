"""Turn what a user gives (a canvas array or an uploaded image file) into an MNIST-style 28×28 digit.

MNIST was made by fitting each digit's bounding box into 20×20 (keeping its aspect ratio, anti-aliased) and
placing that in a 28×28 frame so the centre of mass sits at the centre. `to_mnist` repeats those steps, so a
drawing looks to the models like the digits they were trained on.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

MAX_PIXELS = 4096 * 4096  # larger uploads are refused before any pixel is decoded
MIN_INK = 0.15  # a drawing whose strongest ink is fainter than this (0–1) counts as blank
MIN_INK_PIXELS = 2  # pixels at half strength or more; fewer is a speck of noise, not a drawing
NOISE_FLOOR = 0.1  # ink below this fraction of the strongest ink is background noise (JPEG, paper texture)
FIT = 20
SIZE = 28
CENTRE = 14.0  # MNIST's mean centre of mass, in pixel-index coordinates (measured on the test set)

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own decompression-bomb guard at the same limit


class PreprocessError(ValueError):
    """The input cannot be turned into a digit; the message says why and what to do."""


class BlankDrawingError(PreprocessError):
    pass


class NotAnImageError(PreprocessError):
    pass


class ImageTooLargeError(PreprocessError):
    pass


def to_mnist(source) -> np.ndarray:
    """A canvas array (H, W[, 3|4]) or an image file (bytes, file-like, path, PIL image) → float32 (28, 28)
    in [0, 1], white ink on black, MNIST-style. Raises a `PreprocessError` subclass with a clear message."""
    return ink_to_mnist(ink_map(source))


def ink_map(source) -> np.ndarray:
    """Float (H, W) ink strength in [0, 1] from any supported source, background at 0."""
    if isinstance(source, np.ndarray):
        return _ink_from_array(source)
    return _ink_from_array(_decode(source))


def _decode(source) -> np.ndarray:
    if isinstance(source, Image.Image):
        return _image_to_array(source)
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            data = f.read()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read()
    else:
        raise NotAnImageError(f"cannot read a drawing from {type(source).__name__}; give an image file or array")
    if not data:
        raise NotAnImageError("the file is empty; upload a PNG, JPEG, BMP, GIF or WebP image")
    if data.lstrip()[:5].lower() in (b"<?xml", b"<svg ") or b"<svg" in data[:1024].lower():
        raise NotAnImageError("SVG drawings are not supported; export it as PNG and upload that")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageTooLargeError(
                        f"the image is {width}×{height} pixels; the limit is {MAX_PIXELS:,} pixels "
                        f"(e.g. 4096×4096). Scale it down and upload again")
                return _image_to_array(img)
    except PreprocessError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageTooLargeError(f"the image is too large to decode safely ({err}); scale it down") from err
    except UnidentifiedImageError as err:
        raise NotAnImageError("this file is not an image Pillow can read; upload a PNG, JPEG, BMP, GIF or "
                              "WebP image") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise NotAnImageError(f"the image file is damaged or truncated ({err}); save it again and "
                              f"re-upload") from err


def _image_to_array(img: Image.Image) -> np.ndarray:
    """First frame, any mode → uint8 RGBA, or float greyscale for 16/32-bit and float modes."""
    frame = next(ImageSequence.Iterator(img))
    width, height = frame.size
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(f"the image is {width}×{height} pixels; the limit is {MAX_PIXELS:,} pixels")
    if frame.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = np.asarray(frame, dtype=np.float64)
        top = 65535.0 if frame.mode.startswith("I;16") else max(float(grey.max()), 1.0)
        return np.clip(grey / top, 0.0, 1.0)
    return np.asarray(frame.convert("RGBA"))


def _ink_from_array(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or min(arr.shape[:2]) < 1:
        raise NotAnImageError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ImageTooLargeError(f"the drawing is {arr.shape[1]}×{arr.shape[0]} pixels; the limit is "
                                 f"{MAX_PIXELS:,} pixels")
    top = 65535.0 if arr.dtype == np.uint16 else 255.0 if np.issubdtype(arr.dtype, np.integer) else 1.0
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = _unit(arr[:, :, 3], top)
        if alpha.max() - alpha.min() > MIN_INK:  # transparency carries the drawing: the canvas, a cut-out
            return (alpha - alpha.min()) / (1.0 - alpha.min())
        arr = arr[:, :, :3]
    grey = _luminance(_unit(arr, top)) if arr.ndim == 3 else _unit(arr, top)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    if background < 0.5:  # light ink on dark paper, like MNIST
        return np.clip((grey - background) / (1.0 - background), 0.0, 1.0)
    return np.clip((background - grey) / background, 0.0, 1.0)  # dark-on-light: inverted


def _unit(values: np.ndarray, top: float) -> np.ndarray:
    """Any numeric array → float32 in [0, 1] (NaN → 0); floats above 1 are read as 0–255."""
    out = np.nan_to_num(values.astype(np.float32, copy=False), nan=0.0, posinf=top, neginf=0.0)
    if top == 1.0 and out.max(initial=0.0) > 1.0:
        top = 255.0
    return np.clip(out / top, 0.0, 1.0) if top != 1.0 else np.clip(out, 0.0, 1.0)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def ink_to_mnist(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit into 20×20 keeping aspect ratio, centre by mass in 28×28 (LeCun's recipe)."""
    strongest = float(ink.max(initial=0.0))
    if strongest < MIN_INK or np.count_nonzero(ink >= strongest / 2) < MIN_INK_PIXELS:
        raise BlankDrawingError("nothing is drawn yet: draw a digit (or upload a picture of one)")
    ink = np.where(ink >= NOISE_FLOOR * strongest, ink / strongest, 0.0)
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    height, width = crop.shape
    scale = FIT / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    patch = Image.fromarray(crop.astype(np.float32), mode="F").resize((new_w, new_h), Image.Resampling.BOX
                                                                       if scale < 1 else Image.Resampling.BILINEAR)
    patch = np.clip(np.asarray(patch, dtype=np.float64), 0.0, 1.0)
    patch /= max(patch.max(), 1e-6)

    total = patch.sum()
    com_r = (patch.sum(axis=1) * np.arange(new_h)).sum() / total
    com_c = (patch.sum(axis=0) * np.arange(new_w)).sum() / total
    top = int(np.clip(round(CENTRE - com_r), 0, SIZE - new_h))
    left = int(np.clip(round(CENTRE - com_c), 0, SIZE - new_w))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + new_h, left:left + new_w] = patch
    return out
