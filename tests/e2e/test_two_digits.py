"""The "Two digits at once" page in a real Chromium: a 1 in the red pen, a 0 in the green pen over it; the
CapsNet must name both."""

import math
import re

from tests.e2e.browser import CANVAS, NAV_LINK, act, draw
from tests.e2e.conftest import wait_idle

ONE = [[(0.5, 0.12), (0.5, 0.88)]]
ZERO = [[(0.5 + 0.3 * math.sin(t / 24 * 2 * math.pi), 0.5 - 0.38 * math.cos(t / 24 * 2 * math.pi))
         for t in range(25)]]


def test_a_one_and_a_zero_drawn_over_each_other_are_both_read(page):
    page.goto(page.base_url)
    wait_idle(page)
    act(page, lambda: page.locator(NAV_LINK, has_text="Two digits at once").click())
    page.locator(CANVAS).wait_for()
    act(page, lambda: draw(page, ONE))
    act(page, lambda: page.get_by_text("second digit", exact=True).click())
    act(page, lambda: draw(page, ZERO))
    verdict = page.get_by_text(re.compile("CapsNet reads"))
    verdict.wait_for()
    capsnet = verdict.inner_text().split("·")[0]
    assert set(re.findall(r"\d", capsnet)) == {"0", "1"}, verdict.inner_text()
    page.screenshot(path="test-artifacts/two-digits-1-0.png", full_page=True)
