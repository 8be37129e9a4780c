"""The camera input in a real Chromium: a fake camera fed from a photo of a digit on paper (lamp light from one
side), as a phone would snap it. The Draw page must show the cleaning steps and read the digit."""

import io
import re

import numpy as np
from PIL import Image

from mnist_models import photos
from tests.e2e.browser import NAV_LINK, act, new_page, page_state
from tests.e2e.conftest import CHROMIUM, wait_idle


def fake_camera_file(path, digit_image: np.ndarray) -> None:
    """MJPEG for Chromium's fake camera: 640×480 JPEG frames one after another, each a photo of the digit."""
    photo = Image.open(io.BytesIO(photos.render(photos._handwritten(digit_image, 220), "uneven_light",
                                                np.random.default_rng(5)))).convert("RGB")
    frame = Image.new("RGB", (640, 480), tuple(int(v * 0.8) for v in photos.PAPER))
    frame.paste(photo, ((640 - photo.width) // 2, 0))
    with open(path, "wb") as out:
        for _ in range(30):
            buffer = io.BytesIO()
            frame.save(buffer, "JPEG", quality=90)
            out.write(buffer.getvalue())


def test_a_photo_from_the_camera_is_cleaned_and_read(browser, server, tmp_path, mnist):
    (_, _), (x_test, y_test) = mnist
    video = tmp_path / "digit.mjpeg"
    fake_camera_file(video, x_test[0])
    # a second Chromium with a fake camera, launched by the session's Playwright (one per process)
    camera_browser = browser.browser_type.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"])
    context, page = new_page(camera_browser, 1280, 900, permissions=["camera"])
    try:
        page.goto(server)
        wait_idle(page)
        act(page, page.locator(NAV_LINK, has_text="Draw & classify").click)
        act(page, page.get_by_text("Camera", exact=True).click)
        # a click before the camera delivers frames takes no photo: wait for a playing video first
        page.wait_for_function("""() => { const v = document.querySelector("[data-testid='stCameraInput'] video");
                                           return v && v.readyState >= 2 && v.videoWidth > 0; }""")
        act(page, page.get_by_role("button", name="Take Photo").click)
        verdict = page.get_by_text(re.compile("CNN says"))
        try:
            verdict.wait_for()
        except Exception as error:
            page.screenshot(path="test-artifacts/camera-failed.png", full_page=True)
            raise AssertionError(f"no verdict after the photo; the page showed: {page_state(page)}") from error
        assert re.search(rf"CNN says {y_test[0]}\b", verdict.inner_text()), verdict.inner_text()
        page.get_by_text("the ink found").wait_for()
        page.screenshot(path="test-artifacts/camera-digit.png", full_page=True)
    finally:
        context.close()
        camera_browser.close()
