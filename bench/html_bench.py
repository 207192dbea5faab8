"""Benchmark: HTML reports of a 3,000-tensor checkpoint, written by the CLI and drawn in headless Chromium.

Builds (once, outside the repo) a transformer-shaped state_dict of 3,000 tensors (250 layers x 12)
and a copy with every fourth layer changed, then measures, each in the same run:

* the CLI: ``inspect --json`` against ``inspect --json --html`` and ``diff --json`` against
  ``diff --json --html`` (fresh child processes, best of N, peak RSS from ``wait4``): what the page
  costs on top of the JSON document it embeds;
* the file: its size against the budget of 5 MB + 1 KB per tensor;
* the browser: time from navigation to ``#ckpttool-report[data-ready=true]`` (the page's own
  ``performance.now()`` stamp, ``data-drawn-ms``) and the wall time selenium waited, for the big
  pages and, as the baseline of the same run, the 36-tensor fixture's pages; goal < 3 s.

    python bench/html_bench.py [--layers 250] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, timed, transformer_state_dict

ROOT = Path(__file__).resolve().parent.parent


def make_pair(layers: int) -> tuple[Path, Path]:
    """A small-valued transformer state_dict and a copy with every fourth layer nudged, built once."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    a, b = BENCH_DIR / f"html_{layers}_a.pt", BENCH_DIR / f"html_{layers}_b.pt"
    if a.exists() and b.exists():
        return a, b
    import torch

    torch.manual_seed(0)
    sd = {k: torch.randn(v.shape) for k, v in transformer_state_dict(layers * 12 * 64 * 64 * 4, layers).items()}
    torch.save(sd, a)
    for k, v in sd.items():
        if int(k.split(".")[2]) % 4 == 0:
            v.add_(1e-3)
    torch.save(sd, b)
    return a, b


def browser() -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "chromium"
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "chromedriver"))


def render(driver: object, page: Path, repeat: int) -> tuple[float, float]:
    """Best drawn-at (page clock) and best selenium wait, in seconds."""
    from selenium.webdriver.support.ui import WebDriverWait

    best_page = best_wall = float("inf")
    for _ in range(repeat):
        driver.get("about:blank")
        start = time.perf_counter()
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 120, poll_frequency=0.02).until(
            lambda d: d.find_element("id", "ckpttool-report").get_attribute("data-ready") == "true")
        best_wall = min(best_wall, time.perf_counter() - start)
        drawn_ms = driver.find_element("id", "ckpttool-report").get_attribute("data-drawn-ms")
        best_page = min(best_page, int(drawn_ms) / 1000)
    return best_page, best_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=250, help="12 tensors per layer [250 = 3,000 tensors]")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_only:
        make_pair(args.layers)
        return
    # built in a child: a forked child's peak RSS starts from its parent's, so this process stays small
    subprocess.run([sys.executable, __file__, "--make-only", "--layers", str(args.layers)], check=True)
    a, b = make_pair(args.layers)
    small = ROOT / "fixtures" / "model1_train.pt"
    release = ROOT / "fixtures" / "model1_release.pt"
    out = BENCH_DIR / "html_out"
    out.mkdir(parents=True, exist_ok=True)
    tensors = args.layers * 12
    cases = [
        ("inspect", f"{tensors} tensors", ["inspect", str(a)], out / "inspect_big.html", tensors),
        ("diff", f"{tensors} tensors, 1/4 changed", ["diff", str(a), str(b)], out / "diff_big.html", tensors),
        ("inspect", "36-tensor fixture (baseline)", ["inspect", str(small)], out / "inspect_small.html", 36),
        ("diff", "12-tensor fixture (baseline)", ["diff", str(small), str(release)], out / "diff_small.html", 12),
    ]
    cli = []
    for _, _, cmd, page, _ in cases:
        t_json, rss_json = timed(ckpttool_cmd(*cmd, "--json"), args.repeat)
        page.unlink(missing_ok=True)
        t_html, rss_html = timed(ckpttool_cmd(*cmd, "--json", "--html", str(page)), args.repeat)
        cli.append((t_json, t_html, rss_json, rss_html))
    driver = browser()
    print("| page | checkpoint | CLI --json | CLI --json --html | peak RSS json / html | file | budget | drawn at "
          "| selenium wait |")
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for (kind, label, _, page, n), (t_json, t_html, rss_json, rss_html) in zip(cases, cli):
            size, budget = page.stat().st_size, 5_000_000 + 1000 * n
            drawn, wall = render(driver, page, args.repeat)
            print(f"| {kind} | {label} | {t_json:.2f} s | {t_html:.2f} s "
                  f"| {rss_json / 1024:.0f} / {rss_html / 1024:.0f} MiB | {size / 1e6:.2f} MB | {budget / 1e6:.2f} MB "
                  f"| {drawn:.2f} s | {wall:.2f} s |")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
