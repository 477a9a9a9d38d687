"""The page at ``GET /`` in a real headless browser (Debian's Chromium driven by Selenium).

Skipped, with the reason, where Chromium, its driver or the selenium package is missing. Nothing is
downloaded: Selenium is pointed at the system browser and driver, so Selenium Manager never runs.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cuma.data.profiles import WVB_PERSONA
from cuma.serve import ServeConfig, ServerThread, build_app
from cuma.serve.quick import quick_engine

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1100",
)
SCREENSHOT_ENV = "CUMA_SERVE_SCREENSHOT"
"""Set to a path to keep a screenshot of the page with two profiles answered."""

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        f"headless page test needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="the page test drives Chromium with selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    config = ServeConfig(port=0, max_tokens=48)
    with ServerThread(build_app(quick_engine(), config), config) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def open_page(browser, server: ServerThread) -> WebDriverWait:
    browser.get(f"{server.url}/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    return wait


def fill(browser, profile: int, values: dict[str, str]) -> None:
    card = browser.find_elements(By.CSS_SELECTOR, "#profiles .card")[profile]
    for field, value in values.items():
        box = card.find_element(By.CSS_SELECTOR, f'input[data-field="{field}"]')
        box.clear()
        box.send_keys(value)


def test_page_is_served_as_html(server: ServerThread) -> None:
    response = httpx.get(f"{server.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_two_profiles_get_two_answers_with_option_bars(browser, server: ServerThread) -> None:
    wait = open_page(browser, server)
    assert browser.find_element(By.ID, "model").text == "cuma-quick"
    cards = browser.find_elements(By.CSS_SELECTOR, "#profiles .card")
    assert len(cards) == 2
    assert len(cards[0].find_elements(By.CSS_SELECTOR, "input[data-field]")) == len(WVB_PERSONA.parts)
    fill(browser, 0, {"country": "Norway", "age_group": "45-54", "religion": "None"})
    fill(browser, 1, {"country": "Nigeria", "age_group": "18-24", "religion": "Muslim"})
    browser.find_element(By.ID, "ask").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result.done")) == 2)
    results = browser.find_elements(By.CSS_SELECTOR, "#results .result")
    assert [r.find_element(By.CSS_SELECTOR, ".who").text.split(",")[0] for r in results] == [
        "country: Norway",
        "country: Nigeria",
    ]
    answers = [r.find_element(By.CSS_SELECTOR, ".answer").text for r in results]
    assert all(answer and answer != "…" for answer in answers)
    for result in results:
        bars = result.find_elements(By.CSS_SELECTOR, ".bar")
        assert [bar.get_attribute("data-option") for bar in bars] == ["A", "B", "C", "D"]
        shares = [float(bar.find_element(By.CSS_SELECTOR, ".value").text.rstrip("%")) for bar in bars]
        assert sum(shares) == pytest.approx(100, abs=0.3)
    assert not browser.find_element(By.ID, "error").is_displayed()
    if os.environ.get(SCREENSHOT_ENV):
        Path(os.environ[SCREENSHOT_ENV]).write_bytes(browser.get_screenshot_as_png())


def test_a_server_error_shows_as_a_message(browser, server: ServerThread) -> None:
    wait = open_page(browser, server)
    fill(browser, 0, {"country": "Norway"})  # profile 2 left empty: the server answers 400
    browser.find_element(By.ID, "ask").click()
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    message = browser.find_element(By.ID, "error").text
    assert "Profile 2" in message and "empty" in message and "HTTP 400" in message
    failed = browser.find_elements(By.CSS_SELECTOR, "#results .result.failed")
    assert len(failed) == 1 and "empty" in failed[0].find_element(By.CSS_SELECTOR, ".answer").text
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result.done")) == 1)
