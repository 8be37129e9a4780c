"""The "Two digits at once" page in a real Chromium: a 1 in the red pen, a 0 in the green pen over it; the
CapsNet must name both."""

import math
import re

from tests.e2e.browser import CANVAS, NAV_LINK, act, draw
from tests.e2e.conftest import wait_idle

ONE = [[(0.5, 0.12), (0.5, 0.88)]]
ZERO = [[(0.5 + 0.3 * math.sin(t / 24 * 2 * math.pi), 0.5 - 0.38 * math.cos(t / 24 * 2 * math.pi))
         for t in range(25)]]


def draw_pair(page, red, green) -> str:
    """Open Two digits, draw `red` with the first pen and `green` over it with the second; the verdict line."""
    page.goto(page.base_url)
    wait_idle(page)
    act(page, lambda: page.locator(NAV_LINK, has_text="Two digits at once").click())
    page.locator(CANVAS).wait_for()
    draw(page, red)
    act(page, lambda: page.get_by_text("second digit", exact=True).click())
    draw(page, green)
    verdict = page.get_by_text(re.compile("CapsNet reads"))
    verdict.wait_for()
    return verdict.inner_text()


def test_a_one_and_a_zero_drawn_over_each_other_are_both_read(page):
    verdict = draw_pair(page, ONE, ZERO)
    capsnet = verdict.split("·")[0]
    assert set(re.findall(r"\d", capsnet)) == {"0", "1"}, verdict
    page.screenshot(path="test-artifacts/two-digits-1-0.png", full_page=True)


# an open 4, started below the top edge (the canvas toolbar's box covers the top of the canvas)
FOUR = [[(0.3, 0.22), (0.3, 0.62), (0.78, 0.62)], [(0.64, 0.3), (0.64, 0.92)]]


def test_a_red_four_and_a_green_zero_keep_their_colours(page):
    """Red stays red: the captions name the red pen's digit first, whatever order the capsules came in."""
    verdict = draw_pair(page, FOUR, ZERO)
    # the red pen's digit first for both models, whatever order the capsules or outputs came in
    assert re.search(r"CapsNet reads \d and 0 · CNN reads 4 and 0", verdict), verdict
    red = re.search(r"CapsNet reads (\d)", verdict).group(1)
    page.get_by_text(f"CapsNet's redrawings: {red} red, 0 green").wait_for()
    page.get_by_text(f"iteration 1: votes for {red} (red) and 0 (green)").wait_for()
    page.get_by_text(re.compile("^iteration 3: after routing by agreement")).wait_for()
    page.wait_for_function("""() => [...document.querySelectorAll("[data-testid='stMain'] img")]
                                    .every(img => img.complete && img.naturalWidth > 0)""")  # every picture drawn
    page.screenshot(path="test-artifacts/two-digits-4-0.png", full_page=True)
