"""The "Two digits at once" page in AppTest: a test pair is read and redrawn by both models; a drawing in two
pens (as the canvas sends it) is merged, read, and shown in its colours; "redraw as" asks any capsule."""

import numpy as np
from streamlit.testing.v1 import AppTest


def two_pen_canvas(first: np.ndarray, second: np.ndarray, apart: int = 4) -> np.ndarray:
    """Two MNIST digits as the canvas sends them: red strokes, then green strokes over them, on black, each moved
    `apart` pixels (of 28) to its side, as MultiMNIST shifts its digits (at most 4 px). Drawn exactly on top of
    each other, a 1 inside a 0 reads as a 6 and a 0 to the shipped CapsNet (and a 4 and a 0 to the CNN)."""
    red, green = (np.kron(np.roll(d, shift, axis=1), np.ones((10, 10), np.uint8))
                  for d, shift in ((first, -apart), (second, apart)))
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[..., 3] = 255
    canvas[..., 0] = np.where(green > 0, 0, red)
    canvas[..., 1] = green
    return canvas


def test_random_test_pair_then_a_two_pen_drawing(mnist):
    (_, _), (x_test, y_test) = mnist
    at = AppTest.from_file("../app_pages/multimnist.py", default_timeout=120).run()
    assert not at.exception and any("Draw a digit in red" in i.value for i in at.info)
    at.radio(key="mm_source").set_value("Random test pair").run()
    assert not at.exception and not at.error
    assert any("CapsNet reads" in m.value for m in at.markdown)
    captions = [img.caption for i in at.get("image") for img in i.proto.imgs]
    assert "what the models see (36×36)" in captions and any("CapsNet's redrawings" in c for c in captions)

    one, zero = np.flatnonzero(y_test == 1)[0], np.flatnonzero(y_test == 0)[0]
    at.radio(key="mm_source").set_value("Draw").run()
    at.session_state["mm_raw"] = two_pen_canvas(x_test[one], x_test[zero])
    at.run()
    assert not at.exception and not at.error
    verdict = next(m.value for m in at.markdown if "CapsNet reads" in m.value)
    assert "**1**" in verdict.split("·")[0] and "**0**" in verdict.split("·")[0], verdict
    at.selectbox(key="mm_redraw").set_value(7).run()
    assert any("redrawn from capsule 7" in img.caption for i in at.get("image") for img in i.proto.imgs)
