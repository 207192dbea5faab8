"""Write the README's screenshots of the three HTML reports (headless Chromium; run from the repo root).

    .venv/bin/python docs/make_screenshots.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
REPORTS = {
    "html-inspect": (["inspect", "fixtures/model1_train.pt"], "#treemap-section"),
    "html-diff": (["diff", "fixtures/model1_train.pt", "fixtures/model1_release.pt", "--section", "all"],
                  "#diff-tree-section"),
    "html-resume": (["validate-resume", "fixtures/model1_train.pt", "--epochs", "400", "--schedule", "linear",
                     "--lrf", "0.5"], "#lr-section"),
}


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1400",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "chromium"
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "chromedriver"))
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, (args, selector) in REPORTS.items():
                page = Path(tmp) / f"{name}.html"
                subprocess.run([sys.executable, "-m", "ckpttool", *args, "--html", str(page)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, check=False)
                driver.get(page.as_uri())
                WebDriverWait(driver, 60).until(
                    lambda d: d.find_element("id", "ckpttool-report").get_attribute("data-ready") == "true")
                driver.find_element("css selector", selector).screenshot(str(OUT / f"{name}.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
