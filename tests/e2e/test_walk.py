"""A person's walk in a real Chromium: on every page of the sidebar (read from the app, so a new page is walked
without editing this file) change the widgets, draw where there is a canvas, go to another page and come back;
layouts that fit at laptop, desktop and phone widths (the README's screenshots: tests/e2e/test_screenshots.py).

Every wait is for the condition needed (the script idle again, a text or an image that changed), never a fixed
time."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.browser import CANVAS, CANVAS_PAD, NAV_LINK, act, draw, new_page
from tests.e2e.conftest import wait_idle

ROOT = Path(__file__).resolve().parents[2]
MAIN = "[data-testid='stMain']"
THREE = [[(0.3, 0.22), (0.5, 0.14), (0.68, 0.25), (0.62, 0.42), (0.45, 0.5), (0.66, 0.58), (0.7, 0.74),
          (0.52, 0.87), (0.3, 0.8)]]
CANVAS_PAGES = ("Draw & classify", "Two digits at once")
VIEWPORTS = {"laptop": (1280, 800), "desktop": (1920, 1080), "phone": (390, 844)}

STATE = """() => {
  const main = document.querySelector("[data-testid='stMain']");
  const text = (sel, f) => [...main.querySelectorAll(sel)].filter(e => !e.closest("[data-testid='stForm']")).map(f);
  return [
    ...text("[data-testid='stSliderThumbValue']", e => "slider " + e.textContent),
    ...text("[data-testid='stRadio'] label:has(input:checked)", e => "radio " + e.textContent),
    ...text("[data-testid='stSelectbox']", e => "select " + e.textContent),
    ...text("[data-testid='stNumberInputField']", e => "number " + e.value),
    ...text("[data-testid='stButtonGroup'] button[aria-checked='true']", e => "choice " + e.textContent),
    ...text("h3", e => "heading " + e.textContent),
  ];
}"""

LAYOUT = """() => {
  const problems = [];
  const main = document.querySelector("[data-testid='stMain']");
  if (main.scrollWidth > main.clientWidth + 1)
    problems.push(`main area scrolls sideways: ${main.scrollWidth} > ${main.clientWidth}`);
  if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push("the page scrolls sideways");
  for (const value of document.querySelectorAll("[data-testid='stMetricValue']")) {
    for (const e of [value, ...value.querySelectorAll("*")]) {
      if (e.scrollWidth > e.clientWidth + 1) { problems.push(`metric value cut: ${value.textContent}`); break; }
    }
  }
  for (const canvas of document.querySelectorAll("[data-testid='stBidiComponentIsolated']")) {
    const box = canvas.getBoundingClientRect();
    const column = canvas.closest("[data-testid='stColumn']")
      || main.querySelector("[data-testid='stMainBlockContainer']");
    const room = column.getBoundingClientRect();
    if (box.left < room.left - 1 || box.right > room.right + 1)
      problems.push(`canvas ${box.left}-${box.right} outside its column ${room.left}-${room.right}`);
  }
  return problems;
}"""


def nav_titles(page) -> list[str]:
    page.goto(page.base_url)
    wait_idle(page)
    return [t.strip().splitlines()[-1] for t in page.locator(NAV_LINK).all_inner_texts()]  # after the icon name


def go(page, title: str) -> None:
    current = page.locator(f"{NAV_LINK}[aria-current='page']")
    if current.count() and current.first.inner_text().strip().splitlines()[-1] == title:
        return  # already there: a click on the current page's link starts no rerun
    # the whole label, not a part of it: "Class" is also in "Draw & classify"
    label = re.compile(re.escape(title) + "$")
    act(page, lambda: page.locator(NAV_LINK).filter(has_text=label).first.click())
    page.locator(f"{NAV_LINK}[aria-current='page']").filter(has_text=label).wait_for()


def no_errors(page, where: str) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, f"exception on {where}"
    assert page.locator("[data-testid='stAlertContentError']").count() == 0, f"error on {where}"


def canvas_has_ink(page) -> bool:
    """Any light pixel on the canvas's drawing layers (fabric keeps more than one)."""
    return page.locator("[data-testid='stBidiComponentIsolated'] canvas.lower-canvas").evaluate_all(
        """canvases => canvases.some(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  for (let i = 0; i < d.length; i += 4) if (d[i] > 128) return true; return false; })""")


def verdict_text(page) -> str:
    locator = page.get_by_text(re.compile("CNN says|CapsNet reads"))
    locator.first.wait_for()
    return locator.first.inner_text()


def change_widgets(page) -> int:
    """Move each widget of the main area (outside forms) away from its value, bottom-up, as a person clicks."""
    changed = 0
    main = page.locator(MAIN)
    kinds = {
        "slider": "[data-testid='stSlider']", "radio": "[data-testid='stRadio']",
        "number": "[data-testid='stNumberInput']", "choice": "[data-testid='stButtonGroup']",
        "select": "[data-testid='stSelectbox']",
    }
    for kind, selector in kinds.items():
        count = main.locator(selector).count()
        for index in reversed(range(count)):
            widgets = main.locator(selector)
            if index >= widgets.count():
                continue
            widget = widgets.nth(index)
            if not widget.is_visible() or widget.locator("xpath=ancestor::*[@data-testid='stForm']").count():
                continue  # in a closed tab, or a form (which applies only when submitted: that starts a training)
            if kind == "slider":
                handle = widget.locator("input[type='range']")
                at_max = handle.evaluate("e => Number(e.value) >= Number(e.max)")
                act(page, lambda h=handle, key="ArrowLeft" if at_max else "ArrowRight": (h.focus(), h.press(key)))
            elif kind == "radio":
                options = widget.locator("label:has(input:not(:checked))")
                if not options.count():
                    continue
                act(page, options.first.click)
            elif kind == "number":
                act(page, widget.locator("[data-testid='stNumberInputStepUp']").click)
            elif kind == "choice":
                options = widget.locator("button[aria-checked='false']")
                if not options.count():
                    continue
                act(page, options.first.click)
            else:
                widget.click()
                act(page, page.get_by_role("option", selected=False).first.click)
            no_errors(page, f"{kind} {index}")
            changed += 1
    return changed


@pytest.fixture(scope="module")
def titles(browser, server):
    context, page = new_page(browser)
    page.base_url = server
    names = nav_titles(page)
    context.close()
    assert len(names) >= 8
    return names


def test_every_page_keeps_its_state_on_a_round_trip(page, titles):
    page.goto(page.base_url)
    wait_idle(page)
    report = []

    def round_trip(title: str) -> None:
        go(page, titles[0] if title != titles[0] else titles[1])
        no_errors(page, f"away from {title}")
        go(page, title)
        no_errors(page, f"back on {title}")

    for title in titles:
        go(page, title)
        no_errors(page, title)
        drawn = page.locator(CANVAS_PAD).count() > 0
        if drawn:  # first the drawing alone: changing the widgets may switch the canvas for an upload
            page.locator(CANVAS).wait_for()
            draw(page, THREE)
            shown = verdict_text(page)
            round_trip(title)
            assert verdict_text(page) == shown, f"{title}: the verdict on the drawing changed on the way back"
            assert canvas_has_ink(page), f"{title}: the canvas came back empty"
        changed = change_widgets(page)
        before = page.evaluate(STATE)
        round_trip(title)
        try:  # the page may still be drawing what it got back: wait for the state, then compare
            page.wait_for_function(f"() => JSON.stringify(({STATE})()) === {json.dumps(json.dumps(before))}",
                                   timeout=10_000)
        except PlaywrightTimeout:
            assert page.evaluate(STATE) == before, f"{title}: state lost on the way back"
        report.append(f"{title}: {changed} widget(s) changed{', a drawing' if drawn else ''}, kept on return")
    print("\n".join(report))
    drawn_on = [line.split(":")[0] for line in report if "a drawing" in line]
    assert drawn_on == [t for t in titles if t in CANVAS_PAGES], f"drawn on: {drawn_on}"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_layouts_fit(browser, server, titles, viewport):
    width, height = VIEWPORTS[viewport]
    context, page = new_page(browser, width, height)
    page.goto(server)
    wait_idle(page)
    links = dict(zip(titles, page.locator(NAV_LINK).evaluate_all("links => links.map(a => a.href)"), strict=True))
    drawn = []
    try:
        for title in titles:  # by address: on a phone the sidebar is a closed drawer
            page.goto(links[title])
            page.wait_for_selector(f"{NAV_LINK}[aria-current='page']:has-text('{title}')", state="attached")
            wait_idle(page)
            if page.locator(CANVAS_PAD).count():  # the canvas itself mounts a moment after the page is idle
                page.locator(CANVAS).wait_for()
                draw(page, THREE)
                drawn.append(title)
                verdict_text(page)
            problems = page.evaluate(LAYOUT)
            page.screenshot(path=str(ROOT / "test-artifacts" / f"layout-{viewport}-{title[:12]}.png"),
                            full_page=True)
            assert not problems, f"{title} at {width}×{height}: {problems}"
        assert drawn == [t for t in titles if t in CANVAS_PAGES], f"drawn on: {drawn}"
    finally:
        context.close()
