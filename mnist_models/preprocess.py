"""Turn what a user gives (a canvas array or an uploaded image file) into an MNIST-style 28×28 digit.

MNIST was made by fitting each digit's bounding box into 20×20 (keeping its aspect ratio, anti-aliased) and
placing that in a 28×28 frame so the centre of mass sits at the centre. `to_mnist` repeats those steps, so a
drawing looks to the models like the digits they were trained on.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError
from scipy import ndimage
from skimage import filters

MAX_PIXELS = 4096 * 4096  # larger uploads are refused before any pixel is decoded
MIN_INK = 0.15  # a drawing whose strongest ink is fainter than this (0–1) counts as blank
MIN_INK_PIXELS = 2  # pixels at half strength or more; fewer is a speck of noise, not a drawing
NOISE_FLOOR = 0.1  # ink below this fraction of the strongest ink is background noise (JPEG, paper texture)
PHOTO_SIDE = 400  # pictures of paper are cleaned at this size (longest side)
MIN_PAPER_INK = 0.12  # ink must be at least this much darker than the paper around it
MIN_DIGIT_AREA = 0.0005  # the digit's ink covers at least this share of the picture…
MAX_DIGIT_AREA = 0.25  # …and ink covering more is not a digit (a photo of something else)
MIN_EDGE_INK = 0.4  # ink touching the picture's edge counts only this dark (the paper's shading does not)
RULE_SPAN, RULE_WIDTH = 0.6, 5  # a ruled line runs across 60 % of the page and is under 5 px thick
MIN_PIECE = 0.08  # a piece of ink smaller than this share of the largest is a speck, not part of the digit
NO_DIGIT = ("no ink that looks like a digit was found in this picture: draw a digit, or photograph one written "
            "darkly on light paper, filling a good part of the frame")
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


class Cleaning(NamedTuple):
    """Each step `to_mnist` takes, to show a person why a picture was read the way it was."""

    picture: np.ndarray  # what was given, as uint8 RGB(A) or float grey
    ink: np.ndarray  # the ink found in it, (H, W) in [0, 1] (photos: at most PHOTO_SIDE on the longest side)
    digit: np.ndarray  # the (28, 28) input the models see


def clean(source) -> Cleaning:
    """`to_mnist` with its intermediate steps."""
    picture = source if isinstance(source, np.ndarray) else _decode(source)
    ink = _ink_from_array(picture)
    return Cleaning(picture, ink, ink_to_mnist(ink))


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
    colour = _unit(arr, top)
    grey = _luminance(colour) if arr.ndim == 3 else colour
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    if background < 0.5:  # light ink on dark paper, like MNIST
        return np.clip((grey - background) / (1.0 - background), 0.0, 1.0)
    return ink_on_paper(colour)


def ink_on_paper(picture: np.ndarray) -> np.ndarray:
    """Dark ink on light paper (a scan or a photo, grey (H, W) or colour (H, W, 3) in [0, 1]) → ink strength,
    the paper at 0, at most PHOTO_SIDE pixels on its longest side.

    1. The paper's own brightness, estimated at every pixel by a grey closing (a local maximum, then minimum, over
       a window wider than any stroke): it follows lamp light, vignetting and the sharp edge of a shadow band.
    2. Ink is how much darker than that paper a pixel is, in its darkest colour channel, so blue ballpoint and
       pencil count as ink whatever the light's colour.
    3. The ink threshold comes from the picture itself (Otsu), never below MIN_PAPER_INK.
    4. Ruled and squared lines (long, thin, horizontal or vertical) and specks are removed; so is anything that
       touches the picture's edge (a table beyond the page, the page's own edge), unless nothing else is left.
    """
    picture = _shrink(picture)
    channels = picture[..., None] if picture.ndim == 2 else picture
    window = max(15, min(channels.shape[:2]) // 4)
    paper = np.stack([ndimage.grey_closing(channels[..., c], size=(window, window))
                      for c in range(channels.shape[2])], -1)
    ink = np.clip(1.0 - channels / np.maximum(paper, 1e-3), 0.0, 1.0).max(-1)
    if ink.max(initial=0.0) < MIN_PAPER_INK:
        raise BlankDrawingError(NO_DIGIT)
    mask = ink > max(float(filters.threshold_otsu(ink)), MIN_PAPER_INK)
    keep = _digit_components(mask & ~_ruling(mask), ink)
    keep |= ndimage.binary_closing(keep, iterations=3) & mask  # where a removed line crossed a stroke: the stroke
    return np.where(ndimage.binary_dilation(keep, iterations=1), ink, 0.0).astype(np.float32)


def _shrink(picture: np.ndarray) -> np.ndarray:
    """Area-average down to PHOTO_SIDE on the longest side: plenty for a 20-px digit, and fast on big photos."""
    height, width = picture.shape[:2]
    factor = max(height, width) / PHOTO_SIDE
    if factor <= 1:
        return picture.astype(np.float32)
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    planes = picture[..., None] if picture.ndim == 2 else picture
    small = [np.asarray(Image.fromarray(planes[..., c].astype(np.float32), mode="F").resize(
        size, Image.Resampling.BOX)) for c in range(planes.shape[2])]
    return np.stack(small, -1).squeeze() if picture.ndim == 3 else small[0]


def _ruling(mask: np.ndarray) -> np.ndarray:
    """Pixels of ruled or squared lines: thin (under RULE_WIDTH pixels) straight runs across most of the page.
    A digit's own long strokes (the bar of a 7 filling the frame, a tall 1) are thicker, so they stay."""
    height, width = mask.shape
    lines = np.zeros_like(mask)
    for run, thickness in (((1, max(3, int(width * RULE_SPAN))), (RULE_WIDTH, 1)),
                           ((max(3, int(height * RULE_SPAN)), 1), (1, RULE_WIDTH))):
        straight = ndimage.binary_opening(mask, structure=np.ones(run, bool))
        lines |= straight & ~ndimage.binary_opening(straight, structure=np.ones(thickness, bool))
    return ndimage.binary_dilation(lines, structure=np.ones((3, 3), bool))


def _digit_components(mask: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The connected pieces of ink that make the digit: not specks, not what touches the edge of the picture,
    not ink all over it."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        raise BlankDrawingError(NO_DIGIT)
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.sum() > MAX_DIGIT_AREA * mask.size:
        raise BlankDrawingError(NO_DIGIT)  # ink all over: a photo of a scene or a page of text, not one digit
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inner = np.setdiff1d(np.arange(1, count + 1), edge)
    if len(inner) and sizes[inner - 1].max() >= MIN_DIGIT_AREA * mask.size:
        candidates = inner
    else:  # only ink that touches the edge: a digit cut off by the frame if it is dark, else shading or a table
        candidates = np.array([c for c in range(1, count + 1) if ink[labels == c].max() >= MIN_EDGE_INK], int)
        if not len(candidates):
            raise BlankDrawingError(NO_DIGIT)
    largest = sizes[candidates - 1].max()
    kept = candidates[sizes[candidates - 1] >= max(MIN_PIECE * largest, MIN_DIGIT_AREA * mask.size / 10)]
    return np.isin(labels, kept)


def _unit(values: np.ndarray, top: float) -> np.ndarray:
    """Any numeric array → float32 in [0, 1] (NaN → 0); floats above 1 are read as 0–255."""
    if values.dtype in (np.uint8, np.uint16) and top == np.iinfo(values.dtype).max:
        # a canvas's or a decoded picture's pixels: nothing to clean or clip, and the checks for NaN and range
        # were 1.8 ms of a Draw stroke's server time (py-spy, 51 strokes)
        return values.astype(np.float32) * np.float32(1.0 / top)
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
