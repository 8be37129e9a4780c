"""Helpers shared by the browser tests: selectors, drawing with the mouse, waiting for a rerun to finish."""

NAV_LINK = "[data-testid='stSidebarNav'] a[data-testid='stSidebarNavLink']"
CANVAS = "[data-testid='stBidiComponentIsolated'] canvas.upper-canvas"


def act(page, action) -> None:
    """Do `action` and wait until the rerun it causes has run to its end: an observer installed first records the
    script leaving the idle state, so even a rerun quicker than a poll is seen, and nothing waits a fixed time."""
    page.evaluate("""() => {
      const app = document.querySelector("[data-testid='stApp']");
      window.__reran = false;
      if (window.__observer) window.__observer.disconnect();
      window.__observer = new MutationObserver(() => {
        if (app.dataset.testScriptState !== "notRunning") window.__reran = true; });
      window.__observer.observe(app, {attributes: true, attributeFilter: ["data-test-script-state"]});
    }""")
    action()
    page.wait_for_function("""() => window.__reran &&
      document.querySelector("[data-testid='stApp']").dataset.testScriptState === "notRunning" """)


def draw(page, strokes) -> None:
    canvas = page.locator(CANVAS)
    canvas.hover()  # moves the toolbar's hover box off the drawing area
    box = canvas.bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=8)
        page.mouse.up()
