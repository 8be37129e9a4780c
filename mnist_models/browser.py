"""Driving the app in a real Chromium (Debian's, through Playwright's sync API): opening pages, drawing with the
mouse, waiting for the rerun an action causes. Shared by the browser tests and `bench serve --compare-browser`;
Playwright is a development dependency (requirements-dev.txt), imported only here."""

import time

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic")
CANVAS = "[data-testid='stBidiComponentIsolated'] canvas.upper-canvas"
MOUSE_STEPS = 8  # mouse moves between two given points of a stroke (the light visitor replays as many)
TIMEOUT_MS = 120_000  # a safety net only: every wait is for a condition, and a slow CI machine loads TensorFlow


def new_page(browser, width: int = 1400, height: int = 1000, **options):
    """A fresh context and page at this viewport, with the safety-net timeout and the run counter of `act`."""
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch_runs(page)
    return context, page


def watch_runs(page) -> None:
    """Count the script runs the server reports finished, read from the app's own websocket messages.

    The page's script-state attribute cannot tell that a rerun happened: when the browser is busy, React renders
    "running" and "notRunning" in one go and the attribute never changes. Call before the page opens the app."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    page.runs_finished = 0

    def on_frame(payload) -> None:
        if isinstance(payload, bytes):
            message = ForwardMsg.FromString(payload)
            if (message.WhichOneof("type") == "script_finished"
                    and message.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN):
                page.runs_finished += 1

    page.on("websocket", lambda socket: socket.on("framereceived", on_frame))


def act(page, action, timeout_s: float = TIMEOUT_MS / 1000) -> None:
    """Do `action` and wait until the rerun it causes has run to its end: the server's message that the run
    finished has arrived, and the page shows it (script idle, nothing stale). On a timeout the error says what
    the page showed."""
    before = page.runs_finished
    action()
    deadline = time.monotonic() + timeout_s
    while page.runs_finished <= before:
        if time.monotonic() > deadline:
            raise AssertionError(f"no finished rerun after the action; the page showed: {page_state(page)}")
        page.wait_for_timeout(20)  # hands control to Playwright, which delivers the websocket frames
    page.wait_for_function("""() => document.querySelector("[data-testid='stApp']").dataset.testScriptState
                                    === "notRunning" && !document.querySelector("[data-stale='true']")""")


def page_state(page) -> dict:
    """What a person would see at a glance, for error messages: script state, heading, errors, pending spinners."""
    return page.evaluate("""() => ({
      script: document.querySelector("[data-testid='stApp']")?.dataset.testScriptState,
      heading: document.querySelector("h1")?.textContent,
      current_page: document.querySelector("[data-testid='stSidebarNavLink'][aria-current='page']")?.textContent,
      errors: [...document.querySelectorAll("[data-testid='stException'], [data-testid='stAlertContentError']")]
                .map(e => e.textContent.slice(0, 300)),
      spinners: [...document.querySelectorAll("[data-testid='stSpinner']")].map(e => e.textContent),
      connection: document.querySelector("[data-testid='stStatusWidget']")?.textContent,
    })""")


def draw(page, strokes) -> None:
    """Draw `strokes` on the canvas, each to the end of the rerun its mouse-up causes: waiting once for a drawing
    of several strokes may return on the first stroke's rerun, before the last stroke reached the script."""
    hover_canvas(page)
    for stroke in strokes:
        act(page, lambda stroke=stroke: stroke_on_canvas(page, stroke))


def hover_canvas(page) -> None:
    """Hover the canvas and wait until its toolbar has moved up off the drawing area. Until hovered, the invisible
    toolbar covers the canvas's top 2 rem on the right (CSS top: -1rem), and on hover it moves up only after a
    0.2 s transition: a stroke started there before that draws nothing (compare-browser lost 7 strokes so)."""
    page.locator(CANVAS).hover()
    canvas_top = page.locator(CANVAS).bounding_box()["y"]
    toolbar = page.locator(".dc-toolbar")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (box := toolbar.bounding_box()) and box["y"] + box["height"] > canvas_top + TOOLBAR_OVERLAP_PX:
        if time.monotonic() > deadline:
            raise AssertionError(f"the canvas toolbar stayed over the drawing area: {box}, canvas top {canvas_top}")
        page.wait_for_timeout(20)


TOOLBAR_OVERLAP_PX = 8  # the raised toolbar's padding still reaches this far over the canvas's top edge


def stroke_on_canvas(page, stroke) -> None:
    """One stroke with the mouse through points given in [0, 1] of the canvas."""
    box = page.locator(CANVAS).bounding_box()
    stroke_through(page, [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke])


def stroke_through(page, points) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=MOUSE_STEPS)
    page.mouse.up()
