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

ROOT = Path(__file__).resolve().parent.parent
CANVAS = 280
STROKE_WIDTH = 22  # the Draw page's default stroke width
_CIRCLE = [(0.5 + 0.24 * math.sin(t), 0.5 - 0.33 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 25)]
STROKES = {  # digits drawn as a person does, in strokes of (x, y) in [0, 1]
    0: [_CIRCLE[:13], _CIRCLE[12:]],
    1: [[(0.5, 0.15), (0.5, 0.85)]],
    3: [[(0.3, 0.22), (0.5, 0.14), (0.68, 0.25), (0.62, 0.42), (0.45, 0.5)],
        [(0.45, 0.5), (0.66, 0.58), (0.7, 0.74), (0.52, 0.87), (0.3, 0.8)]],
    4: [[(0.6, 0.12), (0.22, 0.62), (0.8, 0.62)], [(0.6, 0.12), (0.6, 0.9)]],
    7: [[(0.25, 0.2), (0.75, 0.2)], [(0.75, 0.2), (0.45, 0.85)]],
}
PAIRS = ((3, 7), (0, 1), (4, 3), (7, 0), (1, 4))  # (red, green) on Two digits at once
PENS = ("#FF3B3B", "#3BFF5A")  # that page's red and green pens
CANVAS_WIDGET = "streamlit-drawable-canvas.streamlit_drawable_canvas"
ACTIONS = ("stroke", "pair stroke", "pen switch", "slider step", "class", "page switch")


def canvas_state(strokes: list[list[tuple[float, float]]], colours: list[str] | None = None) -> str:
    """The drawable canvas's state after these strokes (white, or each in its colour), as its frontend sends it: the
    picture as a PNG data URL (on the page's black background) and the strokes as Fabric.js paths."""
    picture = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 255))
    pen = ImageDraw.Draw(picture)
    paths = []
    for stroke, colour in zip(strokes, colours or ["#FFFFFF"] * len(strokes), strict=True):
        points = [(x * CANVAS, y * CANVAS) for x, y in stroke]
        pen.line(points, fill=colour, width=STROKE_WIDTH, joint="curve")
        for x, y in (points[0], points[-1]):
            r = STROKE_WIDTH / 2
            pen.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        paths.append({"type": "path", "stroke": colour, "strokeWidth": STROKE_WIDTH, "fill": None,
                      "strokeLineCap": "round", "path": [["M", *points[0]]] + [["L", *p] for p in points[1:]]})
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return json.dumps({"drawing": {"raw": {"version": "5.3.0", "objects": paths, "background": "#000000"},
                                   "data": url}})


@dataclasses.dataclass
class Screen:
    """What the last script run put on the visitor's screen, as far as the checks need it."""

    texts: list[str] = dataclasses.field(default_factory=list)
    images: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (caption, url)
    widgets: dict[str, tuple[str, object]] = dataclasses.field(default_factory=dict)  # label → (kind, proto)
    errors: list[str] = dataclasses.field(default_factory=list)


class Visitor:
    """One browser tab's worth of protocol: a websocket, the app's pages, the widgets seen, the last screen."""

    def __init__(self, url: str, cookie: str | None = None):
        self.url, self.cookie, self.pages, self.widgets, self.screen = url, cookie, {}, {}, Screen()
        self.page_hash, self.server_config = "", None
        self.fragments: dict[str, str] = {}  # widget id → the fragment it was drawn in

    async def open(self) -> None:
        import websockets

        self.socket = await websockets.connect(
            self.url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"], max_size=None,
            open_timeout=120, additional_headers={"Cookie": self.cookie} if self.cookie else None)
        await self.run(page_name="")

    async def close(self) -> None:
        await self.socket.close()

    async def run(self, widget=None, page_name: str | None = None, until=None) -> tuple[float, float]:
        """Send what a browser sends for one interaction (a widget's new value, or a page to open); return the
        seconds until `until(screen)` first held (the result on screen) and until the run finished."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        message = BackMsg()
        state = message.rerun_script
        state.page_script_hash = self.page_hash if page_name is None else ""
        if page_name is not None:
            state.page_name = page_name
        if widget is not None:
            widget_id, kind, value = widget
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
        elif kind == "page_info_changed" or kind == "session_event":
            pass
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            self._element(message.delta.new_element, message.delta.fragment_id)
        return kind == "script_finished" and message.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN

    def _element(self, element, fragment_id: str) -> None:
        kind = element.WhichOneof("type")
        inner = getattr(element, kind) if kind else None
        if kind in ("markdown", "heading"):
            self.screen.texts.append(inner.body)
        elif kind == "imgs":
            self.screen.images += [(image.caption, image.url) for image in inner.imgs]
        elif kind == "exception":
            self.screen.errors.append(f"{inner.type}: {inner.message}")
        elif kind == "alert" and inner.format == inner.ERROR:
            self.screen.errors.append(inner.body)
        if kind in ("slider", "selectbox", "radio"):
            self.widgets[inner.label] = (kind, inner)
        elif kind == "bidi_component":
            self.widgets[inner.component_name] = (kind, inner)
        if kind in ("slider", "selectbox", "radio", "bidi_component"):
            self.fragments[inner.id] = fragment_id

    async def open_page(self, path: str, heading: str) -> float:
        if path not in self.pages:
            raise RuntimeError(f"the app has no page {path!r} (pages: {sorted(self.pages)})")
        seen, _ = await self.run(page_name=path, until=lambda s: heading in s.texts)
        self.page_hash = self.pages[path]
        return seen

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

    def check(self, action: str, key, shown, visitor: int) -> None:
        if shown is None:
            self.errors.append(f"visitor {visitor}: {action} {key}: no result on screen")
        elif (action, key) not in self.expected:
            self.expected[(action, key)] = shown
        elif self.expected[(action, key)] != shown:
            self.crossed.append(f"visitor {visitor}: {action} {key}: saw {shown!r}, "
                                f"alone it shows {self.expected[(action, key)]!r}")


async def no_pause(scale: float = 1.0) -> None:
    pass


async def draw_digit(visitor: Visitor, digit: int, measure, pause=no_pause) -> str | None:
    """On Draw & classify: draw `digit` stroke by stroke, each stroke a `measure`d "stroke"; the verdict shown."""
    canvas = visitor.widget_id(CANVAS_WIDGET)
    strokes = STROKES[digit]
    for k in range(1, len(strokes) + 1):
        await pause(0.5)
        await measure("stroke", visitor.run((canvas, "json_value", canvas_state(strokes[:k])),
                                            until=lambda s: verdict(s) is not None))
    return verdict(visitor.screen)


async def draw_pair(visitor: Visitor, pair: tuple[int, int], measure, pause=no_pause) -> str | None:
    """On Two digits at once: take the red pen, draw the first digit a little to the left stroke by stroke, take the
    green pen and draw the second a little to the right, over it (each stroke a "pair stroke", each pen a "pen
    switch"); the answer shown."""
    canvas, strokes, colours = visitor.widget_id(CANVAS_WIDGET), [], []
    for pen, (digit, shift) in enumerate(zip(pair, (-0.1, 0.1), strict=True)):
        await pause(0.3)
        radio = visitor.widgets["Pen"][1]
        await measure("pen switch", visitor.run((radio.id, "string_value", radio.options[pen])))
        for stroke in STROKES[digit]:
            strokes.append([(x + shift, y) for x, y in stroke])
            colours.append(PENS[pen])
            await pause(0.5)
            await measure("pair stroke", visitor.run((canvas, "json_value", canvas_state(strokes, colours)),
                                                     until=lambda s: pair_verdict(s) is not None))
    return pair_verdict(visitor.screen)


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
            record.check("stroke", digit, await draw_digit(visitor, digit, timed, pause), index)
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
            record.check("pair stroke", pair, await draw_pair(visitor, pair, timed, pause), index)
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


def start_app(port: int, log: Path, app_dir: Path = ROOT, options: tuple[str, ...] = ()) -> subprocess.Popen:
    """`streamlit run app.py` of the checkout in `app_dir` on localhost, returned once it answers its health check
    (the datasets come from this checkout's cache)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "MNIST_MODELS_DATA": os.environ.get("MNIST_MODELS_DATA", str(ROOT / ".cache" / "data"))}
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


async def alone(url: str, record: Record, pid: int | None, repeats: int = 2) -> dict[str, float]:
    """Each action done by one visitor alone, several times: the server CPU seconds each costs (read from /proc
    around the action, when the server's `pid` is known), and what each input shows when nobody else is on the
    server (the crossing checks' truth)."""
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
                shown = await draw_digit(visitor, digit, measure)
                if repeat == 0:
                    record.check("stroke", digit, shown, -1)
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
                shown = await draw_pair(visitor, pair, measure)
                if repeat == 0:
                    record.check("pair stroke", pair, shown, -1)
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
                asyncio.run(alone(address, Record(), server or other.pid, repeats=1))
        if pid and other is not None:
            rounds = {"this": [], "compared": []}
            for _ in range(2):  # alternating, so both see the same machine
                rounds["this"].append(asyncio.run(alone(url, record, pid)))
                rounds["compared"].append(asyncio.run(alone(f"http://127.0.0.1:{other_port}", Record(), other.pid)))
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
