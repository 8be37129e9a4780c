"""Streamlit helpers shared by the pages: cached models, the drawing input, digit images and charts."""

from __future__ import annotations

import base64
import functools
import io
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from mnist_models import WeightsError, catalogue, load_dataset, store
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
    """`store.load`, cached by Streamlit per weights version (`version` changes when other weights are
    chosen), so the spinner shows while a model loads."""
    return store.load(name, dataset, Path(folder))


def model_or_stop(name: str, dataset: str = "mnist"):
    """The model with the chosen (shipped or retrained) weights; if they are unusable, an error that names the
    file and the command that rebuilds it, and the page stops (other pages keep working)."""
    try:
        folder, version = store.active_version(name, dataset)
        return _load(name, dataset, str(folder), version)
    except WeightsError as err:
        st.error(f"**{catalogue.spec(name).title}** ({dataset}) is unavailable: {err}")
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
    kept_key = f"kept::{key}"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(kept_key, default)
    if choices is not None and st.session_state[key] not in choices:
        st.session_state[key] = default
    st.session_state[kept_key] = st.session_state[key]
    return key


def slider(label: str, min_value, max_value, *, key: str, default, choices=None, **kwargs):
    """`st.slider` whose value outlives a visit to another page (see `kept`). The value is passed in: without
    one, Streamlit's slider reads the whole session state to learn whether it is a range slider, which cost a
    millisecond per slider on every run (the Draw page has seventeen)."""
    return st.slider(label, min_value, max_value, value=st.session_state[kept(key, default, choices)], key=key,
                     **kwargs)


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
    stroke = slider("Stroke width", 8, 40, key=f"{key}_stroke", default=22)
    if canvas_key not in st.session_state:  # (re)mounted, e.g. back from another page: redraw the strokes
        st.session_state[initial_key] = st.session_state.get(strokes_key)
    with st.container(key=f"canvas_pad_{key}"):  # present as soon as the script runs, before the canvas mounts
        result = st_canvas(stroke_width=stroke, stroke_color=stroke_color, background_color="#000000",
                           height=CANVAS_SIZE, width=CANVAS_SIZE, drawing_mode="freedraw",
                           initial_drawing=st.session_state[initial_key], return_image_data=True, key=canvas_key)
    picture = result.image_data if result is not None else None  # decoded from its PNG on each access: once
    if picture is not None:
        st.session_state[raw_key] = picture
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
    image([png(thumb), png(ink), digit_png(steps.digit, 112)],
             caption=["your picture", "the ink found", "what the models see"], width=96)


INLINE_PICTURE_BYTES = 48_000


def image(pictures, **kwargs) -> None:
    """`st.image` for the PNGs and GIFs made here, sent inside the page's own message as data: URLs when small.
    Streamlit would otherwise store each picture as a media file (hashing it, and on every rerun the browser
    fetches it back over one more HTTP request, six of them per Draw stroke: issue 42) and re-encode an "auto"
    picture without alpha as a JPEG, which blurs pixel-sharp digits. Large pictures keep the media route, where
    the browser can cache them."""
    listed = pictures if isinstance(pictures, list) else [pictures]
    if all(len(p) <= INLINE_PICTURE_BYTES for p in listed):
        inline = [inline_picture(p) for p in listed]
        st.image(inline if isinstance(pictures, list) else inline[0], **kwargs)
    else:
        st.image(pictures, output_format="PNG", **kwargs)


def inline_picture(picture: bytes) -> str:
    """PNG or GIF bytes → a data: URL the browser shows without asking the server again."""
    kind = "gif" if picture[:4] == b"GIF8" else "png"
    return f"data:image/{kind};base64,{base64.b64encode(picture).decode('ascii')}"


def png(image: Image.Image) -> bytes:
    """PNG bytes, compressed lightly: the pictures here are small, and zlib's default level took most of the time
    of making one on every stroke and slider step."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
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


def show_digit(digit: np.ndarray, caption: str, size: int = 140) -> None:
    image(digit_png(digit, size), caption=caption, width=size)


def figure(data: list[dict], layout: dict) -> go.Figure:
    """A Plotly figure from plain trace and layout dicts, unvalidated: they are written here, and Plotly's
    validation of every property cost half of a chart's time on each stroke (`bench serve`'s profile)."""
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def probability_chart(series: dict[str, np.ndarray], dataset: str = "mnist") -> go.Figure:
    names = list(CLASS_NAMES[dataset])
    return figure([{"type": "bar", "name": label, "x": names, "y": np.asarray(probs).tolist(),
                    "hovertemplate": "%{x}: %{y:.1%}<extra>" + label + "</extra>"} for label, probs in series.items()],
                  {"barmode": "group", "height": 280, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
                   "yaxis": {"range": [0, 1], "tickformat": ".0%"}, "legend": {"orientation": "h", "y": 1.12}})


PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF",
           "#FECB52"]  # Plotly's default colours: the latent map's dots match the scatter's classes


def _latent_pixels(points: np.ndarray, span: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Latent points (N, 2) → (rows, cols) on a size × size picture of [-span, span]², z₂ upwards."""
    cols = np.clip(((points[:, 0] + span) / (2 * span) * size).astype(int), 0, size - 1)
    rows = np.clip(((span - points[:, 1]) / (2 * span) * size).astype(int), 0, size - 1)
    return rows, cols


def scatter_picture(points: np.ndarray, labels: np.ndarray, span: float, size: int) -> np.ndarray:
    """Latent points as 2×2 dots on black, coloured by label: (size, size, 3) uint8."""
    picture = np.zeros((size + 1, size + 1, 3), np.uint8)
    rows, cols = _latent_pixels(points, span, size)
    colours = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in PALETTE], np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            picture[rows + dy, cols + dx] = colours[labels]
    return picture[:size, :size]


def mark_point(picture: np.ndarray, point, span: float) -> bytes:
    """The picture with a white cross at a latent point, as a PNG (a copy: the picture is shared)."""
    marked = picture.copy()
    (row,), (col,) = _latent_pixels(np.asarray([point], np.float32), span, len(picture))
    marked[max(row - 6, 0):row + 7, max(col - 1, 0):col + 2] = 255
    marked[max(row - 1, 0):row + 2, max(col - 6, 0):col + 7] = 255
    return png(Image.fromarray(marked))


def latent_scatter(points: np.ndarray, labels: np.ndarray, names, mine: np.ndarray | None) -> go.Figure:
    """The test set in latent space, one trace per class, and your drawing as a star."""
    data = [{"type": "scattergl", "mode": "markers", "name": names[label], "x": points[labels == label, 0].tolist(),
             "y": points[labels == label, 1].tolist(), "marker": {"size": 4, "opacity": 0.6, "color": PALETTE[label]},
             "hovertemplate": f"{names[label]}<br>z=(%{{x:.2f}}, %{{y:.2f}})<extra></extra>"} for label in range(10)]
    if mine is not None:
        data.append({"type": "scatter", "mode": "markers", "name": "your drawing", "x": [float(mine[0])],
                     "y": [float(mine[1])], "marker": {"size": 18, "symbol": "star", "color": "gold",
                                                       "line": {"width": 1}}})
    return figure(data, {"height": 480, "margin": {"l": 10, "r": 10, "t": 10, "b": 10}, "xaxis": {"title": "z₁"},
                         "yaxis": {"title": "z₂"}})


ROUTING_COLOURS = ((1.0, 0.55, 0.0), (0.2, 0.55, 1.0))  # the winner's capsule orange, the runner-up's blue


def claimed_strokes(ink: np.ndarray, heats: np.ndarray, scale: float, colours, size: int = 140) -> bytes:
    """The strokes of a drawing (H, W) coloured by which capsule claims them: each pixel mixes the capsules'
    colours in proportion to their (non-negative) maps there (K, H, W), grey where no capsule claims it, and is
    brighter where more goes to them (relative to `scale`, one value for every picture that is compared). A PNG."""
    total = heats.sum(0)
    shares = heats / np.maximum(total, 1e-8)
    colour = np.einsum("khw,kc->hwc", shares, np.asarray(colours, np.float32))
    colour += (1.0 - shares.sum(0))[..., None] * 0.5  # unclaimed ink: grey
    strength = 0.35 + 0.65 * np.clip(total / max(scale, 1e-8), 0, 1)
    rgb = colour * (np.clip(ink, 0, 1) * strength)[..., None]
    picture = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return png(picture.resize((size, size), Image.Resampling.NEAREST))


def routed_strokes(image: np.ndarray, trace, digits, iterations, colours, size: int) -> list[bytes]:
    """One picture per routing iteration in `iterations`: the strokes of `image` (H, W) coloured by which of
    `digits` (capsules the trace has pixel maps for) each pixel adds more to (`RoutingTrace.pixel_map`, its
    positive part), brightness on one scale for all of them (the 95th percentile over the ink, so a few strong
    pixels do not leave the rest dark)."""
    heat = np.stack([[np.maximum(trace.pixel_map(d, it)[0], 0) for d in digits] for it in iterations])
    totals = heat.sum(1)
    inked = totals[:, image > 0.3]
    scale = float(np.percentile(inked, 95)) if inked.size else 1.0
    return [claimed_strokes(image, heat[k], scale, colours, size) for k in range(len(iterations))]


def lengths_by_iteration_png(lengths: np.ndarray, winner: int, runner_up: int, width: int = 330,
                              height: int = 150) -> bytes:
    """The ten digit capsules' lengths after each routing iteration as a small bar chart (one group per digit,
    a bar per iteration, lighter to darker; the winner orange, the runner-up blue, the rest grey), drawn with
    Pillow: a picture made once per drawing costs the server far less than an interactive chart per stroke."""
    from PIL import ImageDraw

    iterations = len(lengths)
    picture = _lengths_chart_axes(width, height).copy()
    pen = ImageDraw.Draw(picture)
    left, bottom, top = LENGTHS_CHART_MARGINS
    group = (width - 2 * left) / 10
    bar = (group - 6) / iterations
    for digit in range(10):
        base = {winner: (255, 140, 0), runner_up: (51, 140, 255)}.get(digit, (150, 150, 150))
        for it in range(iterations):
            shade = 0.35 + 0.65 * (it + 1) / iterations
            x0 = left + digit * group + 3 + it * bar
            y0 = height - bottom - float(np.clip(lengths[it, digit], 0, 1)) * (height - bottom - top)
            pen.rectangle([x0, y0, x0 + bar - 1, height - bottom], fill=tuple(int(c * shade) for c in base))
    return png(picture)


LENGTHS_CHART_MARGINS = (8, 16, 6)  # left (and right), bottom (the digits' labels), top


@functools.cache
def _lengths_chart_axes(width: int, height: int) -> Image.Image:
    """The lengths chart's background, axis and digit labels: the same for every drawing, so drawn once (its ten
    labels were most of the chart's time). Shared: copy it before drawing on it."""
    from PIL import ImageDraw

    picture = Image.new("RGB", (width, height), (14, 17, 23))
    pen = ImageDraw.Draw(picture)
    left, bottom, _ = LENGTHS_CHART_MARGINS
    group = (width - 2 * left) / 10
    pen.line([(left, height - bottom), (width - left, height - bottom)], fill=(90, 90, 90))
    for digit in range(10):
        pen.text((left + digit * group + group / 2 - 3, height - bottom + 2), str(digit), fill=(200, 200, 200))
    return picture


# --- the class (mnist_models.classroom): one store per server process, per-visitor roles in session_state --------

CLASS_MEMBER, CLASS_TEACHER = "class_member", "class_teacher"  # session_state keys no widget owns
CLASS_POLL_S = 3.0  # how often a student's Draw page asks what the teacher wants


@st.cache_resource(show_spinner=False)
def _class_store(url: str):
    from mnist_models import classroom

    return classroom.ClassStore(url or None)


def class_store_or_stop():
    """The class store (SQLite by default, PostgreSQL from STUDIO_CLASS_DB); if it cannot be opened, say so."""
    import os

    url = os.environ.get("STUDIO_CLASS_DB", "")
    try:
        return _class_store(url)
    except Exception as err:  # sqlite3/psycopg errors: an unreachable database is an error for the page, not a trace
        st.error(f"The class database cannot be opened ({'STUDIO_CLASS_DB' if url else 'the default SQLite file'}): "
                 f"{err}")
        st.stop()


def keep_class_member() -> None:
    """A student stays in the class across a reload or a new tab: their token rides in the address (?student=...),
    the one thing a new browser session still has. Cheap for everyone else: one dict lookup."""
    from mnist_models import classroom

    member, token = st.session_state.get(CLASS_MEMBER), st.query_params.get("student")
    if member is not None:
        if token != member["token"]:
            st.query_params["student"] = member["token"]
    elif token:
        try:
            found = class_store_or_stop().member(token)
        except classroom.ClassError:
            st.query_params.pop("student", None)
        else:
            st.session_state[CLASS_MEMBER] = {"code": found.code, "token": token, "nickname": found.nickname}


def plain(text: str) -> str:
    """A visitor's text (a nickname) shown literally in Markdown: no emphasis, links or markup of theirs."""
    return "".join(f"\\{c}" if c in "\\`*_{}[]<>()#+-.!|~:$" else c for c in text)


def send_to_class(image: np.ndarray, cnn_probs: np.ndarray, caps_lengths: np.ndarray) -> None:
    """Draw's "Send to class" for a visitor who joined one: the button, the class's current request, and what
    came of the last send (a send only ever happens on the button, so a half-drawn stroke is never sent)."""
    from mnist_models import classroom

    member = st.session_state.get(CLASS_MEMBER)
    if member is None:
        return
    drawing_id = hash(image.tobytes())
    if st.button("Send to class", icon=":material/send:", key="send_to_class",
                 help=f"Send this drawing and both models' verdicts to class {member['code']}"):
        store = class_store_or_stop()
        pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        try:
            seq, new = store.send(member["token"], pixels, cnn_probs, caps_lengths)
            outcome = ("ok", f"Sent to class {member['code']} (drawing {seq})." if new else
                       "Already sent: this drawing is on the board once.")
        except classroom.ClassError as err:
            outcome = ("warning", str(err))
        st.session_state["class_sent"] = (drawing_id, *outcome)
    sent = st.session_state.get("class_sent")
    if sent and sent[0] == drawing_id:  # about this drawing, not one before it
        (st.success if sent[1] == "ok" else st.warning)(sent[2])


def class_request() -> None:
    """What the teacher asks for, polled every few seconds (only this fragment reruns) for visitors in a class."""
    from mnist_models import classroom

    member = st.session_state.get(CLASS_MEMBER)
    if member is None:
        return
    try:
        state = class_store_or_stop().state(member["code"])
    except classroom.ClassError as err:
        st.warning(str(err))
        return
    if state.closed_at is not None:
        st.info(f"Class {member['code']} has ended: drawings are no longer sent.")
    elif state.round is None:
        st.info(f"You are **{plain(member['nickname'])}** in class {member['code']}. Draw a digit and press "
                "**Send to class**.")
    else:
        st.info(f"**Your teacher asks for {state.round.asks}.** Draw it, then press **Send to class**.",
                icon=":material/campaign:")
