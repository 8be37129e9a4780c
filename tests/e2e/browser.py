"""Helpers shared by the browser tests: selectors and picking from a list; drawing with the mouse and waiting for a
rerun are the library's (`mnist_models.browser`, which `bench serve --compare-browser` drives too)."""

from mnist_models.browser import CANVAS, TIMEOUT_MS, act, draw, new_page, page_state  # noqa: F401

NAV_LINK = "[data-testid='stSidebarNav'] a[data-testid='stSidebarNavLink']"
CANVAS_PAD = "[class*='st-key-canvas_pad_']"  # ui.canvas's container: on the page before the canvas mounts in it


def choose(page, label: str, option) -> None:
    """Pick `option` (a name or a pattern) in the selectbox labelled `label`. A rerun that redraws the page while
    the list is open (a live panel's fragment) closes it, so the list is opened again until the option shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator("[data-testid='stSelectbox']").filter(has=page.get_by_text(label, exact=True))
    wanted = page.get_by_role("option", name=option).first
    for _ in range(5):
        box.click()
        try:
            wanted.wait_for(timeout=10_000)
        except PlaywrightTimeout:
            continue
        wanted.click()
        return
    raise AssertionError(f"the {label!r} list never showed {option!r}; the page showed: {page_state(page)}")


