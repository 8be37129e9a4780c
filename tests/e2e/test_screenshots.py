"""The README's screenshots, taken in a real Chromium after real interactions, at 1280×800, into docs/screenshots/.

Not part of the test run (it rewrites tracked files): `./studio.sh screenshots` runs it, and only it (a
`pytest -m browser` that selects it skips it)."""

import os
import re
from pathlib import Path

import pytest

from mnist_models.loadtest import STROKES
from tests.e2e.browser import CANVAS, act, choose, draw, new_page
from tests.e2e.conftest import wait_idle
from tests.e2e.test_browser import plotted_points, progress_text, start_training, wait_until
from tests.e2e.test_class import join_and_send, start_class
from tests.e2e.test_two_digits import FOUR, ZERO
from tests.e2e.test_walk import MAIN, THREE, go, nav_titles

pytestmark = pytest.mark.screenshots
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def rendered(page) -> None:
    """Every picture and chart on screen loaded and drawn (not those in closed tabs)."""
    images = page.locator(f"{MAIN} [data-testid='stImage'] img")
    for i in range(images.count()):
        if images.nth(i).is_visible():
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=images.nth(i).element_handle())
    charts = page.locator(f"{MAIN} [data-testid='stPlotlyChart']")
    for i in range(charts.count()):
        if charts.nth(i).is_visible():
            charts.nth(i).locator(".main-svg").first.wait_for()


def interact(page, title: str) -> None:
    """What a visitor does first on each page, so the picture shows the page at work."""
    if title.startswith("Draw"):
        draw(page, THREE)
        page.get_by_text(re.compile("CNN says")).wait_for()
        page.locator(f"{MAIN} [data-testid='stPlotlyChart'] .main-svg .barlayer").first.wait_for()  # the bars
    elif title.startswith("Two digits"):
        page.locator(CANVAS).wait_for()
        draw(page, FOUR)
        act(page, lambda: page.get_by_text("second digit", exact=True).click())
        draw(page, ZERO)
        page.get_by_text(re.compile("CapsNet's redrawings")).wait_for()
    elif title.startswith("Autoencoders"):  # salt & pepper on a test digit, every autoencoder's denoising
        page.get_by_text(re.compile("PSNR")).first.wait_for()
    elif title.startswith(("Robustness", "Latent")):  # rotate the digit / move along z₁
        handle = page.locator("[data-testid='stSlider'] input[type='range']").first
        act(page, lambda: (handle.focus(), handle.press("ArrowRight"), handle.press("ArrowRight")))
    elif title.startswith("Generate"):  # the shipped ACGAN's sheet of one class
        page.locator("[data-testid='stSelectbox']").first.click()
        act(page, page.get_by_role("option", name="3", exact=True).click)
        page.get_by_text("32 samples of class 3").wait_for()
    elif title.startswith("Train"):  # a short training, pictured once its curve has several points
        start_training(page, epochs=1)
        wait_until(lambda: plotted_points(page) >= 5, timeout=300)
        wait_until(lambda: "finished" in progress_text(page), timeout=300)
        page.get_by_text("Training finished and was saved").wait_for()


def test_screenshots_for_the_readme(browser, server):
    if os.environ.get("STUDIO_SCREENSHOTS") != "1":
        pytest.skip("rewrites the README's screenshots: run ./studio.sh screenshots")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context, page = new_page(browser, 1280, 800)
    page.base_url = server
    try:
        titles = nav_titles(page)
        for title in titles:
            go(page, title)
            wait_idle(page)
            interact(page, title)
            rendered(page)
            slug = re.sub(r"[^a-z]+", "-", title.lower()).strip("-")
            page.screenshot(path=str(SCREENSHOTS / f"{slug}.png"))
            panel = page.locator(".st-key-routing_panel")  # Draw's and Two digits' routing panels, whole
            if panel.count():
                panel.scroll_into_view_if_needed()
                panel.screenshot(path=str(SCREENSHOTS / f"{slug}-routing.png"))
    finally:
        context.close()


def narrow(strokes, by: float = 0.7):
    """The same strokes squeezed sideways about the middle: another hand's digit."""
    return [[(0.5 + (x - 0.5) * by, y) for x, y in stroke] for stroke in strokes]


def test_class_board_after_a_round(browser, server):
    """The board after a real round for a 3: four students in their own browsers, one of whom draws an 8."""
    if os.environ.get("STUDIO_SCREENSHOTS") != "1":
        pytest.skip("rewrites the README's screenshots: run ./studio.sh screenshots")
    contexts = []
    try:
        context, teacher = new_page(browser, 1280, 2000)  # tall: the whole board in one picture
        contexts.append(context)
        teacher.base_url = server
        code = start_class(teacher)
        choose(teacher, "Ask the class for", "3")
        act(teacher, lambda: teacher.get_by_role("button", name="Ask for a 3").click())
        drawings = {"Ada": THREE, "Bo": STROKES[3], "Cy": narrow(STROKES[3]), "Dee": STROKES[8]}
        for nickname, strokes in drawings.items():
            context, student = new_page(browser, 1280, 800)
            contexts.append(context)
            student.base_url = server
            join_and_send(student, code, nickname, strokes)
        teacher.get_by_text(f"{len(drawings)} of {len(drawings)}").first.wait_for()
        teacher.get_by_text(re.compile(r"^Latest drawing of each student \(4 joined, 4 drawings\)")).wait_for()
        rendered(teacher)
        teacher.screenshot(path=str(SCREENSHOTS / "class-board.png"))
    finally:
        for context in contexts:
            context.close()
