import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mnist_models.preprocess import (
    BlankDrawingError,
    ImageTooLargeError,
    NotAnImageError,
    to_mnist,
)
from tests.drawings import STYLES, render


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
def test_real_digits_drawn_by_users_come_back_as_mnist(mnist, style):
    (_, _), (x_test, _) = mnist
    rng = np.random.default_rng(7)
    scores = [correlation(to_mnist(render(x_test[i], style, rng)), x_test[i]) for i in range(200)]
    assert np.mean(scores) >= 0.9, f"{style}: mean correlation {np.mean(scores):.3f}"


def test_output_is_mnist_shaped_and_centred(mnist):
    (_, _), (x_test, _) = mnist
    out = to_mnist(render(x_test[0], "alpha", np.random.default_rng(0), canvas=400))
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() == pytest.approx(1.0)
    rows, cols = np.nonzero(out > 0)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 20
    com = [(out.sum(axis=a) * np.arange(28)).sum() / out.sum() for a in (1, 0)]
    assert all(abs(c - 14) <= 1 for c in com)


def png_bytes(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def digit_image(mnist, mode: str) -> Image.Image:
    (_, _), (x_test, _) = mnist
    ink = np.asarray(Image.fromarray(x_test[0]).resize((140, 140)))
    paper = Image.fromarray(255 - ink)  # dark on light, like a scan
    if mode == "I;16":
        return Image.fromarray((255 - ink).astype(np.uint16) * 257)
    if mode == "RGBA":
        rgba = np.dstack([np.zeros((140, 140, 3), np.uint8), ink])  # transparent background
        return Image.fromarray(rgba)
    return paper.convert(mode)


STORABLE_MODES = {"PNG": ["L", "RGB", "RGBA", "P", "I;16"], "JPEG": ["L", "RGB"], "BMP": ["L", "RGB", "P"],
                  "GIF": ["L", "P", "RGBA"], "WEBP": ["L", "RGB", "RGBA"]}


@pytest.mark.parametrize("fmt, mode", [(f, m) for f, modes in STORABLE_MODES.items() for m in modes])
def test_uploads_of_every_format_and_mode(mnist, fmt, mode):
    (_, _), (x_test, _) = mnist
    out = to_mnist(png_bytes(digit_image(mnist, mode), fmt))
    assert correlation(out, x_test[0]) > 0.85


def test_animated_gif_uses_the_first_frame(mnist):
    (_, _), (x_test, _) = mnist
    frames = [Image.fromarray(x_test[i]).resize((112, 112)) for i in (0, 1)]
    data = png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert correlation(to_mnist(data), x_test[0]) > correlation(to_mnist(data), x_test[1])


def test_file_like_and_pil_sources(mnist):
    image = digit_image(mnist, "L")
    np.testing.assert_allclose(to_mnist(io.BytesIO(png_bytes(image))), to_mnist(image), atol=1e-6)


@pytest.mark.parametrize("canvas", [
    np.zeros((280, 280, 4), np.uint8),  # the canvas before any stroke / after Reset
    np.full((280, 280, 3), 255, np.uint8),  # white paper
    np.full((50, 50), 3, np.uint8),  # near-black noise floor
])
def test_blank_drawings_raise_a_clear_error(canvas):
    with pytest.raises(BlankDrawingError, match="draw a digit"):
        to_mnist(canvas)


def test_a_single_dot_still_gives_a_digit_image():
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[140:150, 140:150, 3] = 255
    out = to_mnist(canvas)
    assert out.shape == (28, 28) and out.max() == 1.0


def test_a_stroke_touching_the_border_and_strokes_filling_the_canvas():
    """Ink cut off at the canvas edge, or a scribble that covers nearly everything: an MNIST-shaped image,
    centred, never an error."""
    edge = np.zeros((280, 280, 4), np.uint8)
    edge[0:200, 0:25, 3] = 255  # a "1" drawn against the left edge, running off the top
    scribble = np.zeros((280, 280, 4), np.uint8)
    scribble[5:275, 5:275, 3] = 255
    scribble[120:160, 120:160, 3] = 0  # a small hole: a huge "0"
    for canvas in (edge, scribble):
        out = to_mnist(canvas)
        assert out.shape == (28, 28) and out.max() == 1.0
        rows, cols = np.nonzero(out > 0.1)
        assert rows.min() >= 3 and rows.max() <= 24 and cols.min() >= 3 and cols.max() <= 24  # 20×20 box


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels but holds almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("source, error, message", [
    (huge_png_header(10000, 10000), ImageTooLargeError, "limit"),
    (b"hello, this is a text file renamed .png", NotAnImageError, "not an image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><circle r='4'/></svg>", NotAnImageError, "SVG"),
    (b"", NotAnImageError, "empty"),
    (np.zeros((5, 5, 7)), NotAnImageError, "shape"),
    (12345, NotAnImageError, "cannot read"),
])
def test_bad_inputs_raise_clear_errors(source, error, message):
    with pytest.raises(error, match=message):
        to_mnist(source)


def test_truncated_png_is_reported(mnist):
    data = png_bytes(digit_image(mnist, "L"))
    with pytest.raises(NotAnImageError, match="damaged or truncated"):
        to_mnist(data[: len(data) // 2])


def test_float_and_nan_arrays_do_not_crash():
    canvas = np.zeros((100, 100), np.float64)
    canvas[20:80, 45:55] = 1.0
    canvas[0, 0] = np.nan
    assert to_mnist(canvas).max() == 1.0
