"""One headless Chromium for the module's browser tests, and reports made by the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.report_html.browser import start_browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    driver = start_browser()
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def make_report(tmp_path: Path, name: str, *args: Any, status: int | None = 0) -> tuple[Path, Any]:
    """Run ``ckpttool ARGS --json --html OUT`` once: the page and the JSON it printed."""
    out = tmp_path / name
    proc = run_cli(*args, "--json", "--html", out)
    assert proc.returncode == status if status is not None else proc.returncode in (0, 1), proc.stderr
    assert proc.stderr == ""
    return out, json.loads(proc.stdout)


def top_modules(keys: Iterable[str]) -> dict[str, str]:
    """Each key's top-level module as the pages list it: below any module prefix every key shares."""
    parts = {k: k.split(".") for k in keys}
    depth = 0
    while (all(len(p) > depth + 1 for p in parts.values())
           and len({p[depth] for p in parts.values()}) == 1):
        depth += 1
    return {k: ".".join(p[:depth + 1]) for k, p in parts.items()}
