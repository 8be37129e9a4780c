"""Load: 20 real browser sessions (contexts of one Chromium) against one `streamlit run app.py`, each drawing its own
digit, sliding a latent and asking the ACGAN for its own class, for a bounded time. No errors, no result crossing
into another session; response times (action → the expected result on screen) go to test-artifacts/load-test.txt.

AppTest instances cannot stand in for sessions here: they share Streamlit's process-global test context, so
running them in threads mixes their session states (a test artefact, not an app fault)."""

import asyncio
import math
import re
import threading
import time

import numpy as np

from tests.e2e.conftest import ARTIFACTS, CHROMIUM

SESSIONS = 20
DURATION_S = 30
CANVAS = "[data-testid='stBidiComponentIsolated'] canvas.upper-canvas"
CIRCLE = [(0.5 + 0.22 * math.sin(t), 0.5 - 0.32 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 24)]
STROKES = {1: [[(0.5, 0.15), (0.5, 0.85)]], 7: [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]], 0: [CIRCLE]}


async def until(check, *args, timeout: float = 180, every: float = 0.05) -> float:
    """Poll the coroutine `check(*args)` until it is true; the time it first was."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await check(*args):
            return time.perf_counter()
        await asyncio.sleep(every)
    raise AssertionError("timed out waiting for a result")


async def open_page(page, title: str) -> None:
    await page.locator("[data-testid='stSidebarNav'] a[data-testid='stSidebarNavLink']", has_text=title).click()
    await page.wait_for_selector(f"h1:has-text('{title}')")


async def draw(page, strokes) -> None:
    canvas = page.locator(CANVAS)
    await canvas.hover()
    box = await canvas.bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        await page.mouse.move(*points[0])
        await page.mouse.down()
        for point in points[1:]:
            await page.mouse.move(*point, steps=4)
        await page.mouse.up()


async def session(browser, url: str, index: int, deadline: float, timings: list, problems: list,
                  rounds: list) -> None:
    digit, wanted_class = list(STROKES)[index % len(STROKES)], index % 10
    context = await browser.new_context(viewport={"width": 1300, "height": 950})
    page = await context.new_page()
    page.set_default_timeout(180_000)
    try:
        await page.goto(url)
        await page.wait_for_selector("h1")
        done = 0
        while time.time() < deadline or done == 0:
            await open_page(page, "Draw & classify")
            await page.locator(CANVAS).wait_for()
            await page.get_by_role("button", name=re.compile("reset|clear", re.I)).first.click()
            verdict = page.get_by_text(re.compile(r"CNN says"))
            await until(_absent, verdict)  # the last round's verdict has gone
            started = time.perf_counter()
            await draw(page, STROKES[digit])
            shown = await until(verdict.count)
            timings.append(("draw", shown - started))
            text = await verdict.first.inner_text()
            if not re.search(rf"CNN says {digit}\b", text):
                problems.append(f"session {index} drew a {digit} but was shown {text!r}")

            await open_page(page, "Latent explorer")
            image = page.locator("[data-testid='stImage'] img").first
            await image.wait_for()
            before = await image.get_attribute("src")
            await page.locator("[data-testid='stSlider'] input[type='range']").first.focus()
            started = time.perf_counter()
            for _ in range(3 + index % 5):
                await page.keyboard.press("ArrowRight")
            changed = await until(_changed, image, before)
            timings.append(("slide", changed - started))

            await open_page(page, "Generate")
            await page.locator("[data-testid='stSelectbox']").first.click()
            started = time.perf_counter()
            await page.get_by_role("option", name=str(wanted_class), exact=True).click()
            caption = page.get_by_text(re.compile(r"32 samples of class"))
            shown = await until(_has_text, caption, f"class {wanted_class} ")
            timings.append(("generate", shown - started))
            if await page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count():
                problems.append(f"session {index}: an error is on the page")
            done += 1
        rounds.append(done)
    except Exception as err:  # noqa: BLE001 - any failure of one session must fail the test, with its index
        problems.append(f"session {index} failed: {err!r}")
        await page.screenshot(path=str(ARTIFACTS / f"load-session-{index}.png"))
    finally:
        await context.close()


async def _absent(locator) -> bool:
    return not await locator.count()


async def _changed(image, before) -> bool:
    return await image.get_attribute("src") != before


async def _has_text(locator, text: str) -> bool:
    return bool(await locator.count()) and text in await locator.first.inner_text()


async def run_load(url: str) -> tuple[list, list, list]:
    from playwright.async_api import async_playwright

    timings, problems, rounds = [], [], []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        deadline = time.time() + DURATION_S
        await asyncio.gather(*[session(browser, url, i, deadline, timings, problems, rounds)
                               for i in range(SESSIONS)])
        await browser.close()
    return timings, problems, rounds


def test_twenty_concurrent_browser_sessions(server):
    results = {}
    # Playwright's sync API (the other e2e tests) owns this thread's event loop: run the async one beside it
    worker = threading.Thread(target=lambda: results.update(out=asyncio.run(run_load(server))))
    started = time.perf_counter()
    worker.start()
    worker.join(timeout=DURATION_S + 900)
    elapsed = time.perf_counter() - started
    assert "out" in results, "the load run did not finish"
    timings, problems, rounds = results["out"]
    assert not problems, "\n".join(problems)
    assert len(rounds) == SESSIONS and min(rounds) >= 1
    seconds = np.array([t for _, t in timings])
    lines = [f"{SESSIONS} concurrent browser sessions, {elapsed:.0f} s, {sum(rounds)} rounds of "
             f"draw + slide + generate (min {min(rounds)} per session), {len(seconds)} actions: "
             f"p50 {np.percentile(seconds, 50):.2f} s, p95 {np.percentile(seconds, 95):.2f} s, "
             f"max {seconds.max():.2f} s"]
    for kind in ("draw", "slide", "generate"):
        own = np.array([t for k, t in timings if k == kind])
        lines.append(f"  {kind}: p50 {np.percentile(own, 50):.2f} s, p95 {np.percentile(own, 95):.2f} s")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load-test.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
