"""Headless Chromium driven by selenium, and the checks every report page must pass in it."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

READY_TIMEOUT_S = 60
_INSTALL = ("install the Debian packages 'chromium' and 'chromium-driver' (make setup does it when run as root) "
            "and the dev extra (pip install -e '.[dev,report]')")


def start_browser() -> Any:
    """A headless Chromium session; fails (never skips) with what to install when it cannot start."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"the browser tests need selenium: {_INSTALL}", pytrace=False)
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail(f"the browser tests need headless Chromium and chromedriver: {_INSTALL}", pytrace=False)
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1600", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(options=options, service=Service(driver))
    except Exception as exc:  # noqa: BLE001 - any start-up failure is the same message to the reader
        pytest.fail(f"headless Chromium did not start ({type(exc).__name__}: {exc}); {_INSTALL}", pytrace=False)


def open_report(driver: Any, page: Path) -> list[dict[str, Any]]:
    """Load ``page``, wait for ``data-ready``, and return the browser log (errors fail the test)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what earlier pages left
    driver.get(page.resolve().as_uri())
    root = driver.find_element("id", "ckpttool-report")
    try:
        WebDriverWait(driver, READY_TIMEOUT_S).until(lambda d: root.get_attribute("data-ready") == "true")
    except TimeoutException:
        pytest.fail(f"{page.name} never became ready; page error: {root.get_attribute('data-error')}; "
                    f"log: {driver.get_log('browser')}")
    log = driver.get_log("browser")
    errors = [e for e in log if e.get("level") == "SEVERE"]
    assert not errors, f"JavaScript errors on {page.name}: {errors}"
    assert root.get_attribute("data-error") is None
    fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched == [], f"{page.name} requested {fetched}"
    return log


def svg_texts(driver: Any, selector: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' svg text')).map(t => t.textContent)", selector)


def embedded_json_in_browser(driver: Any) -> Any:
    return json.loads(driver.execute_script(
        "return JSON.stringify(JSON.parse(document.getElementById('ckpttool-data').textContent))"))


class _DataScript(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.inside = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.inside = tag == "script" and ("id", "ckpttool-data") in attrs

    def handle_endtag(self, tag: str) -> None:
        self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text.append(data)


def embedded_json(page: Path) -> Any:
    """The ``#ckpttool-data`` document, parsed from the file as any HTML parser sees it."""
    parser = _DataScript()
    parser.feed(page.read_text(encoding="utf-8"))
    return json.loads("".join(parser.text))


_COUNT_PIXELS = """
const done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => {
  const c = document.createElement("canvas");
  c.width = img.width; c.height = img.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const colours = new Set();
  let inked = 0, n = 0;
  for (let i = 0; i < d.length; i += 4 * 7) {
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) inked++;
    n++;
  }
  done([img.width, img.height, colours.size, inked / n]);
};
img.onerror = () => done(null);
img.src = "data:image/png;base64," + arguments[0];
"""


def assert_not_blank(driver: Any, png_base64: str) -> None:
    """The screenshot (decoded by the browser's own PNG decoder) has many colours and ink on it."""
    result = driver.execute_async_script(_COUNT_PIXELS, png_base64)
    assert result is not None, "the screenshot is not a PNG the browser can decode"
    width, height, colours, inked = result
    assert width > 600 and height > 400, (width, height)
    assert colours > 16 and inked > 0.03, f"screenshot looks blank: {colours} colours, {inked:.1%} non-white"
