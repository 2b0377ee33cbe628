"""The demo page in a real browser: headless Chromium driven by Selenium picks a pipeline, generates, sees a
readable error for bad input and generates again afterwards."""

import os
import socket

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium chromium-driver; CI installs it)",
                allow_module_level=True)

# Imported only once the browser is known to exist.
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from genlab.demo import build_app  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
PIPELINES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines")
TIMEOUT = 60  # seconds to wait for the page, a control update or an output image on a busy 2-core machine


@pytest.fixture(scope="module")
def url():
    app = build_app(PIPELINES, max_steps=20, max_batch=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def css(driver, selector):
    return driver.find_element(By.CSS_SELECTOR, selector)


def text_of(driver, selector) -> str:
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                                 selector)


def shown(driver, selector) -> bool:
    """Whether the element exists and is rendered (asked in one script: Gradio may remove hidden components)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0;", selector)


def output_src(driver, selector="#output img"):
    """The src of the output image once the browser has decoded it, else None."""
    return driver.execute_script(
        "const img = document.querySelector(arguments[0]);"
        "return img && img.complete && img.naturalWidth > 0 ? img.src : null;", selector)


def type_into(element, value):
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(str(value))


def pick_pipeline(driver, name):
    """Choose `name` in the pipeline dropdown the way a user does: open it, click the option."""
    css(driver, "#pipeline input").click()
    option = f'#pipeline li[role="option"][aria-label="{name}"]'
    wait = WebDriverWait(driver, TIMEOUT)
    wait.until(lambda d: shown(d, option))
    css(driver, option).click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#pipeline input").get_attribute("value") == name)


def open_page(driver, url):
    """Load the page and wait until on-load has described the first pipeline (whichever folder sorts first)."""
    driver.get(url)
    WebDriverWait(driver, TIMEOUT).until(lambda d: text_of(d, "#about").strip())


def generate(driver, steps):
    type_into(css(driver, "#steps input"), steps)
    css(driver, "#generate").click()


def test_pick_generate_error_then_generate_again(url, browser, tmp_path):
    wait = WebDriverWait(browser, TIMEOUT)
    open_page(browser, url)
    pick_pipeline(browser, "ddt-digits")
    wait.until(lambda d: shown(d, "#accel_on"))  # ddt-digits has an acceleration switch: shown
    pick_pipeline(browser, "dit-digits")
    wait.until(lambda d: not shown(d, "#accel_on"))  # dit-digits has no acceleration switch: hidden

    generate(browser, 500)  # over max_steps: a readable line in the page, no traceback
    wait.until(lambda d: "must be between 1 and 20" in text_of(d, "#status"))
    assert "Traceback" not in browser.page_source
    browser.save_screenshot(str(tmp_path / "error.png"))

    generate(browser, 4)  # the app keeps serving after the error
    try:
        wait.until(lambda d: output_src(d) and "dit-digits:" in text_of(d, "#status"))
    finally:
        browser.save_screenshot(str(tmp_path / "generate.png"))
    assert os.path.getsize(tmp_path / "generate.png") > 0
    assert "Error" not in text_of(browser, "#status")


def test_compare_shows_both_outputs(url, browser, tmp_path):
    wait = WebDriverWait(browser, TIMEOUT)
    open_page(browser, url)
    pick_pipeline(browser, "ddt-digits")
    wait.until(lambda d: shown(d, "#accel_on"))
    type_into(css(browser, "#steps input"), 4)
    css(browser, "#compare").click()
    try:
        wait.until(lambda d: output_src(d, "#output_a img") and output_src(d, "#output_b img"))
    finally:
        browser.save_screenshot(str(tmp_path / "compare.png"))
    assert "speed ratio" in text_of(browser, "#status")


def test_video_pipeline_plays_as_gif(browser, tmp_path):
    # An untrained NAR video folder of a few KB (no video pipeline is shipped yet): the clip must reach the page
    # as an animated GIF inside the output image.
    import genlab.pipelines as gp
    from genlab.models import NARModel
    from genlab.tokenizers import VQTokenizer

    if not hasattr(gp, "NARVideoPipeline"):
        pytest.skip("genlab.pipelines has no NARVideoPipeline")
    model = NARModel.from_preset("test", grid_size=(3, 2, 2), pos_embed="learned", vocab_size=32, num_classes=3)
    tok = VQTokenizer.from_preset("tiny", in_channels=3, codebook_size=32)
    gp.NARVideoPipeline(transformer=model, image_tokenizer=tok).save_pretrained(tmp_path / "pipes" / "video-x")
    app = build_app(str(tmp_path / "pipes"), max_steps=20, max_batch=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        wait = WebDriverWait(browser, TIMEOUT)
        browser.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: shown(d, "#num_frames") and not shown(d, "#steps"))  # video: frames, no steps
        css(browser, "#generate").click()
        try:
            wait.until(lambda d: (output_src(d) or "").endswith(".gif"))
        finally:
            browser.save_screenshot(str(tmp_path / "video.png"))
    finally:
        app.close()
