"""`bench serve`: a class of visitors on one app server, measured from the server's side.

Each visitor is a light client that speaks Streamlit's websocket protocol (its protobuf message types ship inside
the streamlit package), so the visitors cost the machine almost nothing and the server has the CPU to itself. Each
does what a student does, with a pause to think between actions: draws a digit on Draw & classify stroke by stroke
(one canvas update per stroke, as the browser sends it on mouse-up), slides a latent on the Latent explorer a few
steps, asks the Generate page's ACGAN for a class, draws two digits over each other with the red and the green pen
on Two digits at once, and switches pages in between. Every answer is checked against the same action done alone,
so a result that crossed from another session is caught.

This module is a client of the app: it imports Streamlit's message types, never its runtime."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import io
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import browser as chromium
from .browser import MOUSE_STEPS

ROOT = Path(__file__).resolve().parent.parent
CANVAS = 280
STROKE_WIDTH = 22  # the Draw page's default stroke width
_CIRCLE = [(0.5 + 0.24 * math.sin(t), 0.5 - 0.33 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 25)]
STROKES = {  # digits drawn as a person does, in strokes of (x, y) in [0, 1]
    0: [_CIRCLE[:13], _CIRCLE[12:]],
    1: [[(0.5, 0.15), (0.5, 0.85)]],
    2: [[(0.3, 0.3), (0.45, 0.16), (0.65, 0.2), (0.66, 0.38), (0.3, 0.82)], [(0.3, 0.82), (0.72, 0.82)]],
    3: [[(0.3, 0.22), (0.5, 0.14), (0.68, 0.25), (0.62, 0.42), (0.45, 0.5)],
        [(0.45, 0.5), (0.66, 0.58), (0.7, 0.74), (0.52, 0.87), (0.3, 0.8)]],
    4: [[(0.6, 0.12), (0.22, 0.62), (0.8, 0.62)], [(0.6, 0.12), (0.6, 0.9)]],
    5: [[(0.68, 0.15), (0.35, 0.15), (0.32, 0.45)],
        [(0.32, 0.45), (0.55, 0.42), (0.7, 0.58), (0.62, 0.8), (0.3, 0.84)]],
    6: [[(0.62, 0.12), (0.4, 0.35), (0.3, 0.65), (0.45, 0.85), (0.65, 0.75), (0.6, 0.55), (0.35, 0.6)]],
    7: [[(0.25, 0.2), (0.75, 0.2)], [(0.75, 0.2), (0.45, 0.85)]],
    8: [[(0.5, 0.5), (0.33, 0.32), (0.5, 0.14), (0.67, 0.32), (0.5, 0.5), (0.3, 0.7), (0.5, 0.88), (0.7, 0.7),
         (0.5, 0.5)]],
    9: [[(0.66, 0.3), (0.5, 0.15), (0.33, 0.3), (0.45, 0.48), (0.66, 0.35)], [(0.66, 0.3), (0.62, 0.88)]],
}
PAIRS = ((3, 7), (0, 1), (4, 3), (7, 0), (1, 4))  # (red, green) on Two digits at once
PENS = ("#FF3B3B", "#3BFF5A")  # that page's red and green pens
CANVAS_WIDGET = "streamlit-drawable-canvas.streamlit_drawable_canvas"
# the warm-up's drawings: a seed no measured run uses. It was -1, but Python seeds a Random with abs(seed), so the
# warm-up drew what seed 1 then drew again, and those strokes were read from the app's cache: compare-browser's
# light side (seed 1) cost 10 ms a stroke in its first round and 21 in its second, 0.65 of Chromium's overall
WARM_UP_SEED = 7_777_777
ACTIONS = ("stroke", "pair stroke", "pen switch", "slider step", "class", "page switch")
# a freedraw path's fields as Chromium's canvas (Fabric.js 7.4) sends them, recorded from a real stroke
FABRIC_PATH = {
    "lockMovementX": False, "lockMovementY": False, "lockRotation": False, "lockScalingX": False,
    "lockScalingY": False, "lockSkewingX": False, "lockSkewingY": False, "lockScalingFlip": False, "type": "Path",
    "version": "7.4.0", "originX": "center", "originY": "center", "fill": None, "strokeDashArray": None,
    "strokeLineCap": "round", "strokeDashOffset": 0, "strokeLineJoin": "round", "strokeUniform": False,
    "strokeMiterLimit": 10, "scaleX": 1, "scaleY": 1, "angle": 0, "flipX": False, "flipY": False, "opacity": 1,
    "shadow": None, "visible": True, "backgroundColor": "", "fillRule": "nonzero", "paintFirst": "fill",
    "globalCompositeOperation": "source-over", "skewX": 0, "skewY": 0}


def handwritten(strokes: list[list[tuple[float, float]]], rng: random.Random | None) -> list[list[tuple[float, float]]]:
    """The strokes as one person draws them once: shifted, scaled and wobbled a little (`rng`), so no two
    drawings are the same picture (the app caches what a drawing shows by its pixels; a class never repeats one).
    Without `rng`, the strokes as they are."""
    if rng is None:
        return strokes
    scale, dx, dy = rng.uniform(0.85, 1.1), rng.uniform(-0.06, 0.06), rng.uniform(-0.05, 0.05)
    return [[(0.5 + (x - 0.5) * scale + dx + rng.uniform(-0.012, 0.012),
              0.5 + (y - 0.5) * scale + dy + rng.uniform(-0.012, 0.012)) for x, y in stroke] for stroke in strokes]


def mouse_path(stroke: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The canvas points of a stroke as the mouse visits them: `MOUSE_STEPS` moves between two given points."""
    points = [(stroke[0][0] * CANVAS, stroke[0][1] * CANVAS)]
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
        points += [((x0 + (x1 - x0) * t) * CANVAS, (y0 + (y1 - y0) * t) * CANVAS)
                   for t in np.arange(1, MOUSE_STEPS + 1) / MOUSE_STEPS]
    return points


def canvas_state(strokes: list[list[tuple[float, float]]], colours: list[str] | None = None) -> str:
    """The drawable canvas's state after these strokes (white, or each in its colour), as Chromium's canvas sends
    it: the picture as an anti-aliased PNG data URL (on the page's black background) and each stroke as a
    Fabric.js path with a point per mouse move, its curve through the midpoints as Fabric's pencil draws it."""
    supersample = 4  # drawn 4× larger and shrunk: the soft edges a browser's canvas gives a stroke
    picture = Image.new("RGB", (CANVAS * supersample, CANVAS * supersample), (0, 0, 0))
    pen = ImageDraw.Draw(picture)
    paths = []
    for stroke, colour in zip(strokes, colours or ["#FFFFFF"] * len(strokes), strict=True):
        points = mouse_path(stroke)
        big = [(x * supersample, y * supersample) for x, y in points]
        width = STROKE_WIDTH * supersample
        pen.line(big, fill=colour, width=width, joint="curve")
        for x, y in big:
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=colour)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        commands = [["M", *points[0]]]
        commands += [["Q", *p, (p[0] + q[0]) / 2, (p[1] + q[1]) / 2]
                     for p, q in zip(points[1:], points[2:], strict=False)]
        commands.append(["L", *points[-1]])
        paths.append({**FABRIC_PATH, "left": (min(xs) + max(xs)) / 2, "top": (min(ys) + max(ys)) / 2,
                      "width": max(xs) - min(xs), "height": max(ys) - min(ys), "stroke": colour,
                      "strokeWidth": STROKE_WIDTH, "path": commands})
    buffer = io.BytesIO()
    picture.resize((CANVAS, CANVAS), Image.Resampling.BOX).convert("RGBA").save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return json.dumps({"drawing": {"raw": {"version": "7.4.0", "objects": paths, "background": "#000000"},
                                   "data": url}})


@dataclasses.dataclass
class Screen:
    """What the last script run put on the visitor's screen, as far as the checks need it."""

    texts: list[str] = dataclasses.field(default_factory=list)
    images: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (caption, url)
    widgets: dict[str, tuple[str, object]] = dataclasses.field(default_factory=dict)  # label → (kind, proto)
    errors: list[str] = dataclasses.field(default_factory=list)
    controls: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # buttons, text inputs drawn: (kind, label)


class Visitor:
    """One browser tab's worth of protocol: a websocket, the app's pages, the widgets seen, the last screen."""

    def __init__(self, url: str, cookie: str | None = None):
        self.url, self.cookie, self.pages, self.widgets, self.screen = url, cookie, {}, {}, Screen()
        self.page_hash, self.server_config = "", None
        self.fragments: dict[str, str] = {}  # widget id → the fragment it was drawn in
        self.controls: dict[tuple[str, str], object] = {}  # (kind, label) → the first drawn in its latest run
        self.auto_reruns: dict[str, float] = {}  # fragment id → seconds between the reruns a browser sends for it
        self.query_string = ""

    async def open(self) -> None:
        import websockets

        self.socket = await websockets.connect(
            self.url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"], max_size=None,
            open_timeout=120, additional_headers={"Cookie": self.cookie} if self.cookie else None)
        await self.run(page_name="")

    async def close(self) -> None:
        await self.socket.close()

    async def run(self, widget=None, page_name: str | None = None, until=None, fragment: str = "",
                  widgets=()) -> tuple[float, float]:
        """Send what a browser sends for one interaction (a widget's new value, several for a form's submit button,
        a page to open, or a `fragment`'s timed rerun); return the seconds until `until(screen)` first held (the
        result on screen) and until the run finished."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        message = BackMsg()
        state = message.rerun_script
        state.page_script_hash = self.page_hash if page_name is None else ""
        state.query_string = self.query_string
        if page_name is not None:
            state.page_name = page_name
        if fragment:
            state.fragment_id, state.is_auto_rerun = fragment, True
        for widget_id, kind, value in ([widget] if widget is not None else []) + list(widgets):
            # as the browser does: a widget drawn inside a fragment reruns only that fragment
            state.fragment_id = self.fragments.get(widget_id, "")
            proto = state.widget_states.widgets.add()
            proto.id = widget_id
            if kind == "double_array_value":
                proto.double_array_value.data.extend(value)
            else:
                setattr(proto, kind, value)
        self.screen = Screen()
        started, seen = time.perf_counter(), None
        await self.socket.send(message.SerializeToString())
        while True:
            finished = self._read(await asyncio.wait_for(self.socket.recv(), timeout=300))
            if seen is None and until is not None and until(self.screen):
                seen = time.perf_counter() - started
            if finished:
                total = time.perf_counter() - started
                return (total if seen is None else seen), total

    def _read(self, data: bytes) -> bool:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        message = ForwardMsg.FromString(data)
        kind = message.WhichOneof("type")
        if kind == "new_session":
            self.page_hash, self.server_config = message.new_session.page_script_hash, message.new_session.config
        elif kind == "navigation":
            self.pages = {page.url_pathname: page.page_script_hash for page in message.navigation.app_pages}
            self.page_hash = message.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query_string = message.page_info_changed.query_string
        elif kind == "auto_rerun":
            self.auto_reruns[message.auto_rerun.fragment_id] = message.auto_rerun.interval
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            self._element(message.delta.new_element, message.delta.fragment_id)
        return kind == "script_finished" and message.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN

    def _element(self, element, fragment_id: str) -> None:
        kind = element.WhichOneof("type")
        inner = getattr(element, kind) if kind else None
        if kind in ("markdown", "heading"):
            self.screen.texts.append(inner.body)
        elif kind == "code":
            self.screen.texts.append(inner.code_text)
        elif kind == "imgs":
            self.screen.images += [(image.caption, image.url) for image in inner.imgs]
        elif kind == "exception":
            self.screen.errors.append(f"{inner.type}: {inner.message}")
        elif kind == "alert":
            (self.screen.errors if inner.format == inner.ERROR else self.screen.texts).append(inner.body)
        if kind in ("slider", "selectbox", "radio"):
            self.widgets[inner.label] = (kind, inner)
        elif kind == "bidi_component":
            self.widgets[inner.component_name] = (kind, inner)
        elif kind in ("button", "text_input") and (kind, inner.label) not in self.screen.controls:
            # kept across runs, as a browser keeps what a fragment's rerun does not redraw
            self.screen.controls.add((kind, inner.label))
            self.controls[(kind, inner.label)] = inner
        if kind in ("slider", "selectbox", "radio", "bidi_component", "button", "text_input"):
            self.fragments[inner.id] = fragment_id

    async def open_page(self, path: str, heading: str) -> float:
        if path not in self.pages:
            raise RuntimeError(f"the app has no page {path!r} (pages: {sorted(self.pages)})")
        seen, _ = await self.run(page_name=path, until=lambda s: heading in s.texts)
        self.page_hash = self.pages[path]
        return seen

    def control(self, kind: str, label: str):
        """The button or text input with this label on the screen (the first, where a page draws two of a label)."""
        if (kind, label) not in self.controls:
            raise RuntimeError(f"no {kind} {label!r} on the screen (seen: {sorted(self.controls)})")
        return self.controls[(kind, label)]

    def widget_id(self, label: str) -> str:
        if label not in self.widgets:
            raise RuntimeError(f"no widget {label!r} on the screen (seen: {sorted(self.widgets)})")
        return self.widgets[label][1].id


def verdict(screen: Screen) -> str | None:
    """Draw & classify's answer line."""
    return next((t for t in screen.texts if t.startswith("### CNN says")), None)


def pair_verdict(screen: Screen) -> str | None:
    """Two digits at once's answer line."""
    return next((t for t in screen.texts if t.startswith("### CapsNet reads")), None)


def image_shown(screen: Screen, caption_start: str) -> tuple[str, str] | None:
    """(caption, address) of the image whose caption starts so; the address is the picture's content hash."""
    return next(((c, u) for c, u in screen.images if c.startswith(caption_start)), None)


def decoded_caption(screen: Screen) -> str | None:
    return (image_shown(screen, "decoded from") or (None,))[0]


def decoded_shown(screen: Screen):
    return image_shown(screen, "decoded from")


def class_caption(screen: Screen) -> str | None:
    return (image_shown(screen, "32 samples of class") or (None,))[0]


def class_shown(screen: Screen):
    return image_shown(screen, "32 samples of class")


@dataclasses.dataclass
class Record:
    """What the visitors measured and saw, per action."""

    seconds: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {a: [] for a in ACTIONS})
    errors: list[str] = dataclasses.field(default_factory=list)
    crossed: list[str] = dataclasses.field(default_factory=list)
    expected: dict = dataclasses.field(default_factory=dict)  # (action, input) → what that input alone shows
    # (action, visitor, canvas state, answer shown): every drawing is new, so its truth is computed afterwards
    drawings: list[tuple[str, int, str, str | None]] = dataclasses.field(default_factory=list)

    def check(self, action: str, key, shown, visitor: int) -> None:
        if shown is None:
            self.errors.append(f"visitor {visitor}: {action} {key}: no result on screen")
        elif (action, key) not in self.expected:
            self.expected[(action, key)] = shown
        elif self.expected[(action, key)] != shown:
            self.crossed.append(f"visitor {visitor}: {action} {key}: saw {shown!r}, "
                                f"alone it shows {self.expected[(action, key)]!r}")


def canvas_picture(state: str) -> np.ndarray:
    """The RGBA picture a canvas state carries, decoded as the canvas component decodes it for the app."""
    url = json.loads(state)["drawing"]["data"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def check_drawings(record: Record) -> None:
    """After a run: every drawing's answer on screen against what the shipped models give the same picture in
    this process (Draw: the CNN's and the CapsNet's digits; Two digits: the CapsNet's two), so an answer that
    crossed from another visitor's drawing is caught although no drawing is ever sent twice."""
    from . import multimnist, store
    from .preprocess import clean

    cnn, capsnet, capsnet_multi = store.load("cnn"), store.load("capsnet"), store.load("capsnet_multi")
    for action, visitor, state, shown in record.drawings:
        picture = canvas_picture(state)
        if action == "stroke":
            digit = clean(picture).digit[None]
            expected = [int(cnn.classify(digit).argmax()), int(capsnet.classify(digit).argmax())]
            got = [int(d) for d in re.findall(r"\*\*(\d)\*\*", shown or "")]
        else:
            image = multimnist.to_multimnist(multimnist.pen_inks(picture)).max(0)[None]
            expected = sorted(int(d) for d in capsnet_multi.read_pair(image).digits[0])
            got = sorted(int(d) for d in re.findall(r"\*\*(\d)\*\*", shown or "")[:2])
        if got != expected:
            record.crossed.append(f"visitor {visitor}: {action}: saw {shown!r}, the drawing alone reads {expected}")


async def no_pause(scale: float = 1.0) -> None:
    pass


async def draw_digit(visitor: Visitor, digit: int, measure, pause=no_pause,
                     rng: random.Random | None = None) -> tuple[str, str | None]:
    """On Draw & classify: draw `digit` stroke by stroke (as one person draws it once, with `rng`), each stroke a
    `measure`d "stroke"; the canvas state sent last and the verdict shown."""
    canvas = visitor.widget_id(CANVAS_WIDGET)
    strokes = handwritten(STROKES[digit], rng)
    for k in range(1, len(strokes) + 1):
        await pause(0.5)
        state = canvas_state(strokes[:k])
        await measure("stroke", visitor.run((canvas, "json_value", state), until=lambda s: verdict(s) is not None))
    return state, verdict(visitor.screen)


def pair_strokes(pair: tuple[int, int], rng: random.Random | None = None) -> list[list[list[tuple[float, float]]]]:
    """The strokes of each pen for a pair on Two digits at once: the first digit a little to the left, the second a
    little to the right, over it."""
    return [[[(x + shift, y) for x, y in stroke] for stroke in handwritten(STROKES[digit], rng)]
            for digit, shift in zip(pair, (-0.1, 0.1), strict=True)]


async def draw_pair(visitor: Visitor, pair: tuple[int, int], measure, pause=no_pause,
                    rng: random.Random | None = None) -> tuple[str, str | None]:
    """On Two digits at once: take the red pen, draw the first digit stroke by stroke, take the green pen and draw
    the second (each stroke a "pair stroke", each pen a "pen switch"); the canvas state sent last and the answer
    shown."""
    canvas, strokes, colours = visitor.widget_id(CANVAS_WIDGET), [], []
    for pen, pen_strokes in enumerate(pair_strokes(pair, rng)):
        await pause(0.3)
        radio = visitor.widgets["Pen"][1]
        await measure("pen switch", visitor.run((radio.id, "string_value", radio.options[pen])))
        for stroke in pen_strokes:
            strokes.append(stroke)
            colours.append(PENS[pen])
            await pause(0.5)
            state = canvas_state(strokes, colours)
            await measure("pair stroke", visitor.run((canvas, "json_value", state),
                                                     until=lambda s: pair_verdict(s) is not None))
    return state, pair_verdict(visitor.screen)


async def visit(url: str, index: int, record: Record, deadline: float, think: float, rng: random.Random) -> None:
    """One student, until `deadline`: draw, slide, ask for a class, draw a pair, with page switches in between."""
    visitor = Visitor(url)
    await visitor.open()
    digits = sorted(STROKES)

    async def pause(scale: float = 1.0) -> None:
        await asyncio.sleep(think * scale * rng.uniform(0.5, 1.5))

    async def timed(action, coroutine):
        seen = await coroutine
        seen = seen[0] if isinstance(seen, tuple) else seen  # a run's (result on screen, run finished)
        record.seconds[action].append(seen)
        record.errors += [f"visitor {index}: {action}: {e}" for e in visitor.screen.errors]
        return seen

    try:
        turn = 0
        while time.monotonic() < deadline:
            digit = digits[(index + turn) % len(digits)]
            await timed("page switch", visitor.open_page("draw", "Draw & classify"))
            record.drawings.append(("stroke", index, *await draw_digit(visitor, digit, timed, pause, rng)))
            await pause()
            await timed("page switch", visitor.open_page("latent", "Latent explorer"))
            slider = visitor.widget_id("z₁")
            z1 = 0.0
            for _ in range(3):  # arrow-key steps, each a rerun
                await pause(0.3)
                z1 = round(z1 + 0.05 * rng.choice((-1, 1)), 2)
                await timed("slider step", visitor.run((slider, "double_array_value", [z1]),
                                                       until=lambda s: decoded_caption(s) is not None))
                record.check("slider step", z1, decoded_shown(visitor.screen), index)
            await pause()
            await timed("page switch", visitor.open_page("generate", "Generate"))
            wanted = (index + turn) % 10
            kind, box = visitor.widgets["Class"]
            await timed("class", visitor.run((box.id, "string_value", box.options[wanted]),
                                             until=lambda s: class_caption(s) is not None))
            record.check("class", wanted, class_shown(visitor.screen), index)
            await pause()
            pair = PAIRS[(index + turn) % len(PAIRS)]
            await timed("page switch", visitor.open_page("multimnist", "Two digits at once"))
            record.drawings.append(("pair stroke", index, *await draw_pair(visitor, pair, timed, pause, rng)))
            await pause()
            turn += 1
    except Exception as err:  # a visitor that cannot go on is an error of the run, not a crash of the benchmark
        record.errors.append(f"visitor {index}: {type(err).__name__}: {err}")
    finally:
        await visitor.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log: Path, app_dir: Path = ROOT, options: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> subprocess.Popen:
    """`streamlit run app.py` of the checkout in `app_dir` on localhost, returned once it answers its health check
    (the datasets come from this checkout's cache; `env` adds to the environment)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "MNIST_MODELS_DATA": os.environ.get("MNIST_MODELS_DATA", str(ROOT / ".cache" / "data")), **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false", *options],
        cwd=app_dir, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the app did not start; see {log}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(re.findall(r"\d+", line)[0]) / 1024


async def alone(url: str, record: Record, pid: int | None, repeats: int = 2, seed: int = 0) -> dict[str, float]:
    """Each action done by one visitor alone, several times: the server CPU seconds each costs (read from /proc
    around the action, when the server's `pid` is known), and what each slider step and class shows when nobody
    else is on the server (the crossing checks' truth). Every drawing is a new one (`seed`), as in a class."""
    rng = random.Random(seed)
    visitor = Visitor(url)
    await visitor.open()
    spent: dict[str, list[float]] = {action: [] for action in ACTIONS}

    async def measure(action: str, coroutine):
        before = cpu_seconds(pid) if pid else 0.0
        result = await coroutine
        spent[action].append(cpu_seconds(pid) - before if pid else float("nan"))
        return result

    try:
        for repeat in range(repeats):
            await measure("page switch", visitor.open_page("draw", "Draw & classify"))
            for digit in STROKES:
                record.drawings.append(("stroke", -1, *await draw_digit(visitor, digit, measure, rng=rng)))
            await measure("page switch", visitor.open_page("latent", "Latent explorer"))
            slider = visitor.widget_id("z₁")
            for z1 in (-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15):
                await measure("slider step", visitor.run((slider, "double_array_value", [z1]),
                                                         until=lambda s: decoded_caption(s) is not None))
                if repeat == 0:
                    record.check("slider step", z1, decoded_shown(visitor.screen), -1)
            await measure("page switch", visitor.open_page("generate", "Generate"))
            for wanted in range(10):
                box = visitor.widgets["Class"][1]
                await measure("class", visitor.run((box.id, "string_value", box.options[wanted]),
                                                   until=lambda s: class_caption(s) is not None))
                if repeat == 0:
                    record.check("class", wanted, class_shown(visitor.screen), -1)
            await measure("page switch", visitor.open_page("multimnist", "Two digits at once"))
            for pair in PAIRS:
                record.drawings.append(("pair stroke", -1, *await draw_pair(visitor, pair, measure, rng=rng)))
    finally:
        await visitor.close()
    # the mean: /proc counts CPU time in ticks of 10 ms, so a single action's figure is coarse but unbiased
    return {action: float(np.mean(values)) for action, values in spent.items() if values}


def run_beside(coroutine, timeout: float | None = None):
    """`asyncio.run` in a thread of its own: works where the calling thread already runs an event loop (the
    tests' Playwright, whose sync API keeps one in the main thread)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout)


async def class_of(url: str, sessions: int, duration: float, think: float, record: Record, seed: int) -> None:
    deadline = time.monotonic() + duration
    visitors = [visit(url, i, record, deadline, think, random.Random(seed + i)) for i in range(sessions)]
    await asyncio.gather(*visitors)


def run(sessions: int, duration: float, think: float, seed: int = 0, url: str | None = None,
        compare: Path | None = None) -> dict:
    """Start the app (unless `url` names a running one), measure each action alone, then `sessions` visitors at
    once for `duration` seconds; the visitors' own process runs at the lowest CPU priority. With `compare` (another
    checkout of the app, e.g. a `git worktree` of an older commit), each action alone is measured on both apps in
    alternating rounds, and the CPU per action of this one is given as a ratio to the other's."""
    logs = ROOT / "logs"
    logs.mkdir(exist_ok=True)
    process = other = None
    if url is None:
        port = free_port()
        process = start_app(port, logs / "bench-serve-app.log")
        url = f"http://127.0.0.1:{port}"
    if compare is not None:
        other_port = free_port()
        other = start_app(other_port, logs / "bench-serve-compared-app.log", Path(compare))
    os.nice(19)  # after the servers started: they keep their priority, the visitors take what is left
    pid = process.pid if process else None
    try:
        record = Record()
        per_action = {}
        for address, server in ((url, pid), (f"http://127.0.0.1:{other_port}" if other else None, None)):
            if address and pid:  # the first visit loads and warms up the models: not what a visitor pays later
                asyncio.run(alone(address, Record(), server or other.pid, repeats=1, seed=WARM_UP_SEED))
        if pid and other is not None:
            rounds = {"this": [], "compared": []}
            for k in range(2):  # alternating, so both see the same machine, each drawing new to both apps
                rounds["this"].append(asyncio.run(alone(url, record, pid, seed=2 * k)))
                rounds["compared"].append(asyncio.run(alone(f"http://127.0.0.1:{other_port}", Record(), other.pid,
                                                            seed=2 * k + 1)))
            per_action, before = ({a: float(np.median([r[a] for r in rounds[side]])) for a in ACTIONS}
                                  for side in ("this", "compared"))
            compared = {"cpu_s_per_action_alone_compared": {a: round(v, 4) for a, v in before.items()},
                        "cpu_ratio_this_to_compared": {a: round(per_action[a] / max(before[a], 1e-9), 2)
                                                       for a in ACTIONS}}
            other.terminate()
        else:
            per_action = asyncio.run(alone(url, record, pid, repeats=1 if pid is None else 2))
        before = cpu_seconds(pid) if pid else 0.0
        started = time.perf_counter()
        asyncio.run(class_of(url, sessions, duration, think, record, seed))
        wall = time.perf_counter() - started
        spent = (cpu_seconds(pid) - before) if pid else float("nan")
        actions = sum(len(v) for v in record.seconds.values())
        check_drawings(record)
        return {
            "sessions": sessions, "duration_s": round(wall, 1), "think_s": think,
            "actions": {a: summary(v) for a, v in record.seconds.items()},
            "cpu_s_per_action_alone": {a: round(v, 4) for a, v in per_action.items()} if pid else None,
            "cpu_s_per_action_under_load": round(spent / max(actions, 1), 4),
            "server_cpu_share": round(spent / wall, 2),
            "server_peak_memory_mb": round(peak_memory_mb(pid)) if pid else None,
            "errors": record.errors[:20], "error_count": len(record.errors),
            "crossed": record.crossed[:20], "crossed_count": len(record.crossed),
            **(compared if other is not None and pid else {}),
        }
    finally:
        if other is not None and other.poll() is None:
            other.kill()
        if process:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def summary(seconds: list[float]) -> dict:
    if not seconds:
        return {"count": 0}
    p50, p95 = np.percentile(seconds, [50, 95])
    return {"count": len(seconds), "p50_s": round(float(p50), 3), "p95_s": round(float(p95), 3),
            "max_s": round(max(seconds), 3)}


# --- a real Chromium beside the light visitor --------------------------------------------------------------------
SETTLE_S = 0.5  # after an action's rerun, what the browser still sends and the server still does has landed
QUIET_S = 0.5  # before each action, the server's idle CPU is sampled for this long
BROWSER_ACTIONS = ("stroke", "pen switch", "pair stroke")


class StrokeMeter:
    """Server CPU of one action: from before it until `SETTLE_S` after its rerun finished, less what the server
    spends idle with this visitor connected in as long (a Chromium stroke, mouse moves included, lasts three times
    a light one's). The idle rate is sampled in a quiet window of `QUIET_S` before every action, so it is the rate
    of the same minutes the actions ran in."""

    def __init__(self, pid: int):
        self.pid = pid
        self.raw: dict[str, list[tuple[float, float]]] = {action: [] for action in BROWSER_ACTIONS}  # (cpu, wall) s
        self.quiet_cpu = self.quiet_wall = 0.0
        self.lost: list[str] = []  # strokes the canvas never sent (no rerun): said in the figures, not hidden

    def start(self) -> tuple[float, float]:
        return time.monotonic(), cpu_seconds(self.pid)

    def elapsed(self, started: tuple[float, float]) -> tuple[float, float]:
        return cpu_seconds(self.pid) - started[1], time.monotonic() - started[0]

    def quiet(self, started: tuple[float, float]) -> None:
        cpu, wall = self.elapsed(started)
        self.quiet_cpu, self.quiet_wall = self.quiet_cpu + cpu, self.quiet_wall + wall

    def stop(self, action: str, started: tuple[float, float]) -> None:
        self.raw[action].append(self.elapsed(started))

    @property
    def idle_rate(self) -> float:
        """Server CPU seconds per second with nothing asked of it."""
        return self.quiet_cpu / max(self.quiet_wall, 1e-9)

    @property
    def spent(self) -> dict[str, list[float]]:
        return {action: [cpu - self.idle_rate * wall for cpu, wall in values] for action, values in self.raw.items()}


class ChromiumSide:
    """One real Chromium (Playwright): a digit drawn on Draw & classify stroke by stroke with the mouse on a fresh
    visit of the page, a pair drawn on Two digits at once; the server CPU of each stroke and pen switch."""

    def __init__(self, page, url: str, meter: StrokeMeter):
        self.page, self.url, self.meter = page, url, meter

    def measured(self, action: str, act) -> bool:
        quiet = self.meter.start()
        self.page.wait_for_timeout(QUIET_S * 1000)
        self.meter.quiet(quiet)
        started = self.meter.start()
        try:
            chromium.act(self.page, act, timeout_s=20)
        except AssertionError:
            return False
        self.page.wait_for_timeout(SETTLE_S * 1000)
        self.meter.stop(action, started)
        return True

    def visit(self, path: str) -> None:
        self.page.goto(f"{self.url}/{path}")
        self.page.locator(chromium.CANVAS).wait_for()
        self.settled()

    def settled(self) -> None:
        """Until no rerun has finished for a second: the canvas's mount and first value have been dealt with."""
        runs = -1
        while runs != self.page.runs_finished:
            runs = self.page.runs_finished
            self.page.wait_for_timeout(1000)

    def digit(self, digit: int, rng: random.Random) -> None:
        self.visit("draw")
        chromium.hover_canvas(self.page)
        for points in handwritten(STROKES[digit], rng):
            if not self.measured("stroke", lambda points=points: chromium.stroke_on_canvas(self.page, points)):
                self.meter.lost.append(f"digit {digit}")
                return

    def pair(self, pair: tuple[int, int], rng: random.Random) -> None:
        self.visit("multimnist")
        for pen, pen_strokes in enumerate(pair_strokes(pair, rng)):
            if pen:  # a fresh visit starts with the first pen: clicking it again sends nothing
                self.measured("pen switch", lambda: self.page.get_by_text("second digit", exact=True).click())
                self.settled()  # the canvas mounts again in the new pen's colour
            chromium.hover_canvas(self.page)
            if not all(self.measured("pair stroke", lambda p=points: chromium.stroke_on_canvas(self.page, p))
                       for points in pen_strokes):
                self.meter.lost.append(f"pair {pair}, pen {pen + 1}")
                return


class LightSide:
    """The light visitor through the same digits and pairs, each on a fresh visit of its page, measured alike."""

    def __init__(self, visitor: Visitor, meter: StrokeMeter):
        self.visitor, self.meter = visitor, meter

    async def measure(self, action: str, coroutine):
        quiet = self.meter.start()
        await asyncio.sleep(QUIET_S)
        self.meter.quiet(quiet)
        started = self.meter.start()
        result = await coroutine
        await asyncio.sleep(SETTLE_S)
        self.meter.stop(action, started)
        return result

    async def digit(self, digit: int, rng: random.Random) -> None:
        await self.visitor.open_page("draw", "Draw & classify")
        if (await draw_digit(self.visitor, digit, self.measure, rng=rng))[1] is None:
            self.meter.lost.append(f"digit {digit}: no verdict")

    async def pair(self, pair: tuple[int, int], rng: random.Random) -> None:
        await self.visitor.open_page("multimnist", "Two digits at once")
        if (await draw_pair(self.visitor, pair, self.measure, rng=rng))[1] is None:
            self.meter.lost.append(f"pair {pair}: no answer")


def compare_browser(rounds: int = 2, seed: int = 0, app_dir: Path = ROOT, pin: bool = True) -> dict:
    """`bench serve --compare-browser`: one Chromium and one light visitor on one fresh app, taking turns digit by
    digit (which goes first alternates) through the same ten digits and five pairs, `rounds` times, each drawing
    new to the app (the two visitors' jitters differ): the server CPU per action of each side by side, in ms, means
    over all strokes with their standard errors. Turns, not rounds of each: on this machine the CPU time of the
    same work drifts by a quarter from one minute to the next (a virtual machine's neighbours), and two minutes of
    one side then two of the other read as a gap between them that was not there. Means, not medians: /proc counts
    CPU time in 10 ms ticks, so one stroke reads 10, 20 or 30 ms and a median snaps to a tick; the mean of many is
    unbiased. With `pin`, the app runs on a core of its own and both visitors on the other, as a server with its
    visitors' browsers on their own machines (this moved both sides by only about 1.5 ms a stroke)."""
    from playwright.sync_api import sync_playwright

    logs = ROOT / "logs"
    logs.mkdir(exist_ok=True)
    port = free_port()
    cores = os.sched_getaffinity(0)
    pinned = pin and len(cores) >= 2
    if pinned:  # the app inherits the first core; this process, its Chromium and its light visitor get the rest
        server_core = min(cores)
        os.sched_setaffinity(0, {server_core})
    try:
        process = start_app(port, logs / "bench-serve-browser-app.log", Path(app_dir))
    finally:
        if pinned:
            os.sched_setaffinity(0, cores - {server_core})
    url = f"http://127.0.0.1:{port}"
    loop = asyncio.new_event_loop()  # the light visitor's, in a thread of its own: Playwright's sync API keeps one here
    worker = concurrent.futures.ThreadPoolExecutor(1)
    worker.submit(loop.run_forever)

    def light(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    meters = {"chromium": StrokeMeter(process.pid), "light": StrokeMeter(process.pid)}
    try:
        light(alone(url, Record(), process.pid, repeats=1, seed=WARM_UP_SEED))  # loads and warms up the models
        visitor = Visitor(url)
        light(visitor.open())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium.CHROMIUM,
                                                 args=list(chromium.CHROMIUM_ARGS))
            try:
                context, page = chromium.new_page(browser)
                real, quick = ChromiumSide(page, url, meters["chromium"]), LightSide(visitor, meters["light"])
                rngs = {side: random.Random(seed * 2 + k) for k, side in enumerate(meters)}
                turn = 0
                for _ in range(rounds):
                    for task, items in (("digit", STROKES), ("pair", PAIRS)):
                        for item in items:
                            for chromium_turn in (turn % 2 == 0, turn % 2 == 1):
                                if chromium_turn:
                                    getattr(real, task)(item, rngs["chromium"])
                                else:
                                    light(getattr(quick, task)(item, rngs["light"]))
                            turn += 1
                context.close()
            finally:
                browser.close()
        light(visitor.close())
        return browser_figures(meters, rounds, pinned)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        worker.shutdown()
        os.sched_setaffinity(0, cores)
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def browser_figures(meters: dict[str, StrokeMeter], rounds: int, pinned: bool) -> dict:
    """The two sides' server CPU per action in ms (means, standard errors, their ratio) and idle rates."""
    figures = {}
    for action in BROWSER_ACTIONS:
        spent = {side: meter.spent[action] for side, meter in meters.items()}
        row = {side: round(1000 * float(np.mean(values)), 1) for side, values in spent.items()}
        row["light_to_chromium"] = round(row["light"] / max(row["chromium"], 1e-9), 2)
        row["count"] = len(spent["chromium"])
        for side, values in spent.items():
            row[f"{side}_standard_error"] = round(1000 * float(np.std(values) / np.sqrt(max(len(values), 1))), 1)
        figures[action] = row
    return {"server_cpu_ms_per_action_mean": figures, "settle_s": SETTLE_S, "quiet_s": QUIET_S,
            "server_idle_ms_per_s": {side: round(1000 * meter.idle_rate, 2) for side, meter in meters.items()},
            "rounds": rounds, "server_on_its_own_core": pinned,
            "strokes_never_sent": [f"{side}: {what}" for side, meter in meters.items() for what in meter.lost]}
