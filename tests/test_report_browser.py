"""The path explorer in a real browser: headless Chromium through its WebDriver (Debian's chromium and
chromium-driver; `.ci/run` installs them). Without them these tests are skipped, unless
NEURONPATH_REQUIRE_BROWSER=1 (as in CI), where their absence fails."""

import io
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from captum_neuronpath._cli import main

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from report_scale import write_synthetic_paths  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        message = "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("NEURONPATH_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--no-first-run"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _open(browser, page: Path):
    browser.get(page.resolve().as_uri())
    browser.get_log("browser")  # start each page with an empty console


def _console_errors(browser) -> list:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def _visible(browser, selector: str) -> bool:
    return browser.execute_script(f"return !document.querySelector({selector!r}).hidden")


def _screenshot(browser, file: Path) -> Image.Image:
    browser.save_screenshot(str(file))
    return Image.open(io.BytesIO(file.read_bytes())).convert("RGB")


def _not_blank(image: Image.Image) -> bool:
    colours = image.getcolors(maxcolors=1 << 20) or []
    return len(colours) > 50 and max(count for count, _ in colours) < 0.97 * image.width * image.height


def test_clicking_a_class_then_a_neuron_shows_their_panels(browser, digits_report, tmp_path):
    from selenium.webdriver.common.by import By

    _open(browser, digits_report / "index.html")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#class-list li")) == 10
    assert _visible(browser, "#overview-panel") and not _visible(browser, "#class-panel")
    browser.find_element(By.CSS_SELECTOR, '#class-list li[data-class="3"]').click()
    assert _visible(browser, "#class-panel") and not _visible(browser, "#overview-panel")
    panel = browser.find_element(By.ID, "class-panel")
    assert panel.find_element(By.TAG_NAME, "h2").text == "Class digit 3 (3)"
    assert panel.find_elements(By.CSS_SELECTOR, "canvas.heatmap")
    cards = panel.find_elements(By.CSS_SELECTOR, ".example")
    assert cards and all(card.find_elements(By.TAG_NAME, "img") for card in cards)
    class_shot = _screenshot(browser, tmp_path / "class.png")
    assert _not_blank(class_shot)

    neuron = panel.find_element(By.CSS_SELECTOR, "a.neuron")
    layer, channel = neuron.get_attribute("data-neuron").split(":")
    neuron.click()
    assert _visible(browser, "#neuron-panel") and not _visible(browser, "#class-panel")
    panel = browser.find_element(By.ID, "neuron-panel")
    assert panel.find_element(By.TAG_NAME, "h2").text == f"Neuron #{channel} of blocks.{layer}.mlp.act"
    assert panel.find_elements(By.CSS_SELECTOR, "a.class") and panel.find_elements(By.CSS_SELECTOR, ".example")
    assert browser.current_url.endswith(f"#neuron={layer}:{channel}")
    assert _not_blank(_screenshot(browser, tmp_path / "neuron.png"))

    browser.find_element(By.CSS_SELECTOR, "#neuron-panel a.class").click()  # back to a class from the neuron
    assert _visible(browser, "#class-panel")
    assert _console_errors(browser) == []


def test_a_link_to_a_class_opens_its_panel(browser, digits_report):
    from selenium.webdriver.common.by import By

    _open(browser, digits_report / "index.html")
    browser.get((digits_report / "index.html").resolve().as_uri() + "#class=7")
    browser.refresh()
    assert browser.find_element(By.CSS_SELECTOR, "#class-panel h2").text == "Class digit 7 (7)"
    assert _console_errors(browser) == []


def test_a_thousand_classes_render_lazily_and_search(browser, tmp_path):
    from selenium.webdriver.common.by import By

    file = write_synthetic_paths(tmp_path / "paths.jsonl", records=5_000, classes=1_000, layers=12, channels=3_072)
    assert main(["report", str(file), "--out", str(tmp_path / "report")]) == 0
    _open(browser, tmp_path / "report" / "index.html")
    items = browser.find_elements(By.CSS_SELECTOR, "#class-list li")
    assert len(items) == 301 and items[-1].text == "700 more: refine the search"
    search = browser.find_element(By.ID, "search")
    search.send_keys("class 0999")
    (item,) = browser.find_elements(By.CSS_SELECTOR, "#class-list li")
    item.click()
    assert browser.find_element(By.CSS_SELECTOR, "#class-panel h2").text == "Class class 0999 (999)"
    browser.find_element(By.CSS_SELECTOR, "#class-panel a.neuron").click()
    assert _visible(browser, "#neuron-panel")
    assert _not_blank(_screenshot(browser, tmp_path / "thousand.png"))
    assert _console_errors(browser) == []
