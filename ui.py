"""Streamlit helpers shared by the pages: cached models, the drawing input, digit images and charts."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from mnist_models import WeightsError, load_dataset, registry
from mnist_models.data import CLASS_NAMES, DataUnavailableError
from mnist_models.preprocess import BlankDrawingError, Cleaning, PreprocessError, clean

CANVAS_SIZE = 280
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp"]


def keep_keras_state_between_runs() -> None:
    """Stop Streamlit from calling `keras.backend.clear_session()` after every script run.

    Streamlit does that in `script_runner._clean_problem_modules` (1.67). In Keras 3 it swaps the process-wide
    state of every thread and resets TensorFlow's graph and kernel cache, so a model another session is building
    at that moment gets duplicate layer names and fails, and shared models lose their compiled kernels. The 20-session
    browser load test hit it within a minute. Our models are shared across sessions on purpose: keep them; still
    close matplotlib figures as Streamlit does.
    """
    from streamlit.runtime.scriptrunner import script_runner

    def clean_matplotlib_only() -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.close("all")

    script_runner._clean_problem_modules = clean_matplotlib_only


@st.cache_resource(show_spinner="Loading model…", max_entries=32)
def _load(name: str, dataset: str, folder: str, version: str):
    """`registry.load`, cached by Streamlit per weights version (`version` changes when other weights are
    chosen), so the spinner shows while a model loads."""
    return registry.load(name, dataset, Path(folder))


def model_or_stop(name: str, dataset: str = "mnist"):
    """The model with the chosen (shipped or retrained) weights; if they are unusable, an error that names the
    file and the command that rebuilds it, and the page stops (other pages keep working)."""
    try:
        folder, version = registry.active_version(name, dataset)
        return _load(name, dataset, str(folder), version)
    except WeightsError as err:
        st.error(f"**{registry.spec(name).title}** ({dataset}) is unavailable: {err}")
        st.stop()


@st.cache_resource(show_spinner="Loading the test set…")
def _test_set(dataset: str):
    (_, _), (x_test, y_test) = load_dataset(dataset)
    return x_test, y_test


def test_set_or_stop(dataset: str = "mnist"):
    try:
        return _test_set(dataset)
    except DataUnavailableError as err:
        st.error(str(err))
        st.stop()


def kept(key: str, default, choices=None):
    """`key` for a widget whose value outlives a visit to another page.

    Streamlit removes a widget's key from `st.session_state` at the end of any run that does not draw the widget,
    so after a visit elsewhere its value is gone (and reading it raises KeyError). Call this right before drawing
    the widget, and draw it without a default (`value=`/`index=`): the value is copied into a key no widget owns
    on every run and re-seeded from there whenever the widget's own key is missing. A kept value that is no
    longer among `choices` (e.g. a slider's range changed) falls back to `default`.
    """
    store = f"kept::{key}"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(store, default)
    if choices is not None and st.session_state[key] not in choices:
        st.session_state[key] = default
    st.session_state[store] = st.session_state[key]
    return key


def set_kept(key: str, value) -> None:
    """Change a kept widget's value from the script (before the widget is drawn in this run)."""
    st.session_state[key] = st.session_state[f"kept::{key}"] = value


def drawing_input(key: str = "draw") -> np.ndarray | None:
    """A canvas (stroke width, undo and reset in its toolbar), an upload or a camera snapshot → MNIST-style
    (28, 28), or None.

    What the person drew, uploaded or snapped survives a visit to another page (the canvas is redrawn with the
    same strokes). For a picture, the steps of its cleaning are shown: the picture, the ink found, the 28×28 input.
    The last good drawing is kept in `st.session_state["drawing"]` so the other pages can use it.
    """
    mode = st.radio("Input", INPUT_MODES, horizontal=True, key=kept(f"{key}_mode", "Draw"),
                    label_visibility="collapsed")
    if mode == "Draw":
        source = canvas(key)
    elif mode == "Upload":
        source = _kept_file(key, "upload", lambda: st.file_uploader(
            "Upload a picture of one digit", type=UPLOAD_TYPES, key=f"{key}_upload"))
    else:
        source = _kept_file(key, "camera", lambda: st.camera_input(
            "Photograph one digit written on paper", key=f"{key}_camera",
            help="Dark ink on light paper, the digit filling a good part of the frame. Lamp light, shadows, ruled "
                 "or squared paper, pencil and blue ink are fine."))
    if source is None:
        st.info(f"✏️ {INPUT_HINTS[mode]} to see what the models make of it.")
        return None
    try:
        steps = clean(source)
    except BlankDrawingError as err:
        if mode == "Draw":
            st.info("✏️ The canvas is empty: draw a digit to see what the models make of it.")
        else:
            st.warning(f"{str(err)[0].upper()}{str(err)[1:]}.")
        return None
    except PreprocessError as err:
        st.error(f"That input could not be used: {err}")
        return None
    if mode != "Draw":
        show_cleaning(steps)
    st.session_state["drawing"] = steps.digit
    return steps.digit


INPUT_MODES = ["Draw", "Upload", "Camera"]
INPUT_HINTS = {"Draw": "Draw a digit above (or upload one)", "Upload": "Upload a picture of a digit",
               "Camera": "Take a photo of a digit on paper"}


def canvas(key: str, stroke_color: str = "#FFFFFF",
            caption: str = "Draw one digit, white on black. The toolbar above the canvas has undo, redo and reset "
                           "(bin).") -> np.ndarray | None:
    """The drawing canvas (RGBA at CANVAS_SIZE); its strokes are kept and redrawn when it is mounted again."""
    from streamlit_drawable_canvas import st_canvas

    raw_key, strokes_key, initial_key, canvas_key = (f"{key}_raw", f"{key}_strokes", f"{key}_initial",
                                                    f"{key}_canvas")
    stroke = st.slider("Stroke width", 8, 40, key=kept(f"{key}_stroke", 22))
    if canvas_key not in st.session_state:  # (re)mounted, e.g. back from another page: redraw the strokes
        st.session_state[initial_key] = st.session_state.get(strokes_key)
    result = st_canvas(stroke_width=stroke, stroke_color=stroke_color, background_color="#000000",
                       height=CANVAS_SIZE, width=CANVAS_SIZE, drawing_mode="freedraw",
                       initial_drawing=st.session_state[initial_key], return_image_data=True, key=canvas_key)
    if result is not None and result.image_data is not None:
        st.session_state[raw_key] = result.image_data
        st.session_state[strokes_key] = result.json_data
    st.caption(caption)
    return st.session_state.get(raw_key)


def _kept_file(key: str, kind: str, widget) -> bytes | None:
    """A file widget (uploader, camera) whose file outlives a visit to another page (such a widget's own value
    cannot be restored): its bytes are kept in a key no widget owns until another file replaces them."""
    kept_key = f"{key}_{kind}_kept"
    given = widget()
    if given is not None:
        st.session_state[kept_key] = (given.name, given.getvalue())
    elif kept_key in st.session_state:
        st.caption(f"Showing your earlier {'photo' if kind == 'camera' else 'upload'} "
                   f"**{st.session_state[kept_key][0]}**; {'take' if kind == 'camera' else 'upload'} another to "
                   "replace it.")
    return st.session_state[kept_key][1] if kept_key in st.session_state else None


def show_cleaning(steps: Cleaning) -> None:
    """The picture, the ink the preprocessing found in it, and the 28×28 input, side by side."""
    picture = steps.picture
    if picture.dtype != np.uint8:
        picture = (np.clip(picture, 0, 1) * 255).astype(np.uint8)
    thumb = Image.fromarray(picture)
    thumb.thumbnail((240, 240))
    ink = Image.fromarray((np.clip(steps.ink, 0, 1) * 255).astype(np.uint8))
    ink.thumbnail((240, 240))
    st.image([png(thumb), png(ink), digit_png(steps.digit, 112)],
             caption=["your picture", "the ink found", "what the models see"], width=96)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def digit_png(image: np.ndarray, size: int = 140) -> bytes:
    """A (28, 28) float image in [0, 1] → PNG bytes, upscaled without blurring."""
    pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return png(Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST))


def dataset_picker(datasets, key: str) -> str:
    """MNIST / Fashion-MNIST switch for pages whose models exist for both."""
    return st.segmented_control("Dataset", list(datasets), key=kept(key, "mnist"),
                                format_func=lambda d: {"mnist": "MNIST", "fashion": "Fashion-MNIST"}[d]) or "mnist"


def _mosaic(images: np.ndarray) -> np.ndarray:
    """(rows, cols, 28, 28) → (rows·28, cols·28)."""
    rows, cols = images.shape[:2]
    return images.transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)


def grid_png(images: np.ndarray, cell: int = 56) -> bytes:
    """(rows, cols, 28, 28) → one PNG mosaic."""
    rows, cols = images.shape[:2]
    pixels = (np.clip(_mosaic(images), 0, 1) * 255).astype(np.uint8)
    return png(Image.fromarray(pixels).resize((cols * cell, rows * cell), Image.Resampling.NEAREST))


def evolution_gif(frames: np.ndarray, millis: int = 400) -> bytes:
    """uint8 grids (epochs, rows, cols, 28, 28) → an animated GIF that plays the epochs, as the originals did."""
    rows, cols = frames.shape[1:3]
    images = [Image.fromarray(_mosaic(frame)).resize((cols * 28 * 2, rows * 28 * 2), Image.Resampling.NEAREST)
              for frame in frames]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=millis, loop=0)
    return buf.getvalue()


def show_digit(image: np.ndarray, caption: str, size: int = 140) -> None:
    st.image(digit_png(image, size), caption=caption, width=size)


def probability_chart(series: dict[str, np.ndarray], dataset: str = "mnist") -> go.Figure:
    names = CLASS_NAMES[dataset]
    fig = go.Figure([go.Bar(name=label, x=names, y=probs, hovertemplate="%{x}: %{y:.1%}<extra>" + label +
                            "</extra>") for label, probs in series.items()])
    fig.update_layout(barmode="group", height=280, margin=dict(l=10, r=10, t=10, b=10),
                      yaxis=dict(range=[0, 1], tickformat=".0%"), legend=dict(orientation="h", y=1.12))
    return fig
