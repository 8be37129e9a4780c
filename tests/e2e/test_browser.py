"""Real-browser tests: mouse drawing on the canvas, sliders, page switches."""

import re
import time

from tests.e2e.browser import act, choose, draw
from tests.e2e.conftest import wait_idle


def open_page(page, title: str):
    page.goto(page.base_url)
    wait_idle(page)
    page.locator("[data-testid='stSidebarNav'] a[data-testid='stSidebarNavLink']", has_text=title).click()
    page.wait_for_selector(f"h1:has-text('{title}')")
    wait_idle(page)


def verdict(page, previous: str | None = None, timeout: float = 30) -> str:
    """The 'CNN says … · CapsNet says …' line, once it differs from `previous`."""
    locator = page.get_by_text(re.compile(r"CNN says"))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if locator.count():
            text = locator.first.inner_text()
            if text != previous:
                return text
        time.sleep(0.05)
    raise AssertionError(f"the verdict did not change from {previous!r}")


def reset_canvas(page):
    """The canvas toolbar's bin (not Plotly's "Reset axes", which also matches "reset")."""
    page.get_by_role("button", name="Reset canvas & history").click()


def test_draw_a_one_and_a_seven(page):
    open_page(page, "Draw & classify")
    page.get_by_text(re.compile("Draw a digit")).first.wait_for()
    started = time.perf_counter()  # from the stroke's start (drawing it takes a few tens of ms)
    draw(page, [[(0.5, 0.15), (0.5, 0.85)]])
    one = verdict(page)
    stroke_to_result = time.perf_counter() - started
    assert re.search(r"CNN says 1\b.*CapsNet says 1\b", one), one
    page.screenshot(path="test-artifacts/draw-one.png")

    reset_canvas(page)
    page.get_by_text(re.compile("canvas is empty|Draw a digit")).first.wait_for()
    started = time.perf_counter()
    draw(page, [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]])
    seven = verdict(page, one)
    warm_stroke_to_result = time.perf_counter() - started
    assert re.search(r"CNN says 7\b.*CapsNet says 7\b", seven), seven
    # how the capsules routed the 7: three iterations' maps, drawn, and the sentence that names the two capsules
    page.get_by_text("How the capsules routed").wait_for()
    page.get_by_text(re.compile(r"^Capsule 7 \(orange\) against capsule \d \(blue\)")).wait_for()
    for iteration in (1, 2, 3):
        page.get_by_text(f"iteration {iteration}", exact=True).wait_for()
    page.wait_for_function("""() => [...document.querySelectorAll("[data-testid='stMain'] img")]
                                    .every(img => img.complete && img.naturalWidth > 0)""")  # every picture drawn
    page.get_by_text(re.compile(r"capsule 7: [\d.]+ after iteration 1")).wait_for()  # the lengths chart's caption
    page.screenshot(path="test-artifacts/draw-seven.png", full_page=True)

    # a losing capsule: redrawn faintly, says why, and can be drawn at the winner's length
    choose(page, "Redraw as digit", "1")
    page.get_by_text(re.compile(r"^Capsule 1 is [\d.]+ long \(the winning 7: [\d.]+\)")).wait_for()
    page.get_by_text("redrawn from capsule 1", exact=True).wait_for()
    act(page, lambda: page.get_by_text("At the winner's length", exact=True).click())
    page.get_by_text("redrawn from capsule 1 at the winner's length", exact=True).wait_for()
    page.screenshot(path="test-artifacts/draw-seven-as-one.png", full_page=True)
    print(f"stroke to verdict: first stroke {stroke_to_result:.2f} s, next {warm_stroke_to_result:.2f} s "
          "(the canvas itself waits 0.2 s after a stroke before it sends the drawing)")


def test_latent_slider_changes_the_decoded_image(page):
    open_page(page, "Latent explorer")
    image = page.locator("[data-testid='stImage'] img").first
    before = image.get_attribute("src")
    slider = page.locator("[data-testid='stSlider'] input[type='range']").first
    slider.focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    deadline = time.time() + 30
    while image.get_attribute("src") == before and time.time() < deadline:
        time.sleep(0.1)
    assert image.get_attribute("src") != before
    page.screenshot(path="test-artifacts/latent-slider.png")


def test_acgan_draws_the_class_asked_for(page):
    open_page(page, "Generate")
    image = page.locator("[data-testid='stImage'] img").first
    image.wait_for()
    before = image.get_attribute("src")
    page.locator("[data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name="3", exact=True).click()
    page.get_by_text("32 samples of class 3").wait_for()
    wait_until(lambda: image.get_attribute("src") != before, timeout=30)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    page.screenshot(path="test-artifacts/generate-acgan-3.png", full_page=True)


def plotted_points(page) -> int:
    return page.evaluate("""() => {
        const plot = document.querySelector(".st-key-loss_chart .js-plotly-plot");
        return (plot && plot.calcdata && plot.calcdata.length) ? plot.calcdata[0].length : 0; }""")


def progress_text(page) -> str:
    bar = page.locator("[data-testid='stProgress']")
    return bar.first.inner_text() if bar.count() else ""


def wait_until(predicate, timeout=120, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(every)
    raise AssertionError("timed out")


def start_training(page, epochs: int, size: str = "5k images"):
    page.get_by_text(size).click()
    epochs_box = page.get_by_label("Epochs")
    epochs_box.fill(str(epochs))
    epochs_box.press("Tab")
    clicked = time.time()
    page.get_by_role("button", name=re.compile("Train")).click()
    return clicked


def test_training_page_live_curve_page_switch_and_stop(page):
    open_page(page, "Train")
    clicked = start_training(page, epochs=1)
    first_point = wait_until(lambda: plotted_points(page) >= 1)
    wait_until(lambda: plotted_points(page) >= 3 and "running" in progress_text(page))  # live, before the end

    page.locator("[data-testid='stSidebarNav'] a", has_text="Model zoo").click()
    page.wait_for_selector("h1:has-text('Model zoo')")
    page.locator("[data-testid='stSidebarNav'] a", has_text="Train").click()
    page.wait_for_selector("h1:has-text('Train')")
    wait_until(lambda: "finished" in progress_text(page) or "running" in progress_text(page))
    wait_until(lambda: "finished" in progress_text(page), timeout=300)
    page.get_by_text("Training finished and was saved").wait_for()
    page.screenshot(path="test-artifacts/train-finished.png", full_page=True)

    start_training(page, epochs=5)
    wait_until(lambda: "running" in progress_text(page) and plotted_points(page) >= 2)
    stop_clicked = time.time()
    page.get_by_role("button", name=re.compile("Stop")).click()
    page.get_by_text(re.compile("Stopped after")).wait_for(timeout=120_000)
    stopped = time.time()
    assert "stopped" in progress_text(page)
    page.screenshot(path="test-artifacts/train-stopped.png", full_page=True)
    print(f"click to first point: {first_point - clicked:.2f} s; Stop to end: {stopped - stop_clicked:.2f} s")


def preview_caption(page) -> str:
    caption = page.get_by_text(re.compile(r"^after batch \d+ \(epoch [\d.]+\)"))
    return caption.first.inner_text() if caption.count() else ""


def test_training_previews_change_before_the_first_epoch_ends(page):
    """A CapsNet's redrawings of fixed test digits, refreshed while its one epoch runs: the picture changes at
    least twice before the epoch is over (the caption says how far it is), then the run is stopped mid-epoch."""
    open_page(page, "Train")
    choose(page, "Model", re.compile("CapsNet"))
    start_training(page, epochs=1, size="20k images")  # an epoch long enough for several previews on a fast machine
    seen = {}

    def new_preview_during_the_epoch() -> bool:
        caption = preview_caption(page)
        match = re.search(r"epoch ([\d.]+)", caption)
        if not match or float(match.group(1)) >= 1.0:
            return False
        image = page.locator("[data-testid='stImage'] img").first
        src = image.get_attribute("src") if image.count() else None
        if src and caption not in seen and image.evaluate("img => img.complete && img.naturalWidth > 0"):
            seen[caption] = src
        return len(set(seen.values())) >= 3  # the first picture and two changes

    wait_until(new_preview_during_the_epoch, timeout=300)
    page.screenshot(path="test-artifacts/train-previews.png", full_page=True)
    page.get_by_role("button", name=re.compile("Stop")).click()  # mid-epoch: the previews seen were all before 1.00
    page.get_by_text(re.compile("Stopped after")).wait_for()
    assert all(float(re.search(r"epoch ([\d.]+)", c).group(1)) < 1 for c in seen), seen
