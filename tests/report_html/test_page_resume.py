"""The validate-resume page: both LR curves, the resume marker and the checklist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES
from tests.oracle import torch_load
from tests.report_html.browser import assert_not_blank, embedded_json, embedded_json_in_browser, open_report, svg_texts
from tests.report_html.conftest import make_report

_SERIES = "return echarts.getInstanceByDom(document.getElementById('lr-chart')).getOption().series"


def test_resume_page_has_both_curves_and_the_resume_marker(browser: Any, tmp_path: Path) -> None:
    ckpt = torch_load(FIXTURES / "model1_train.pt")
    start = ckpt["epoch"] + 1  # YOLOv5 saves the last finished epoch
    page, doc = make_report(tmp_path, "resume.html", "validate-resume", FIXTURES / "model1_train.pt", "--epochs", "400")
    open_report(browser, page)
    assert embedded_json(page) == doc
    assert embedded_json_in_browser(browser) == doc
    assert doc["start_epoch"] == start

    texts = svg_texts(browser, "#lr-chart")
    assert "old plan" in texts and "resumed run" in texts
    assert f"resume at epoch {start}" in texts
    assert any(t.startswith("jump ") for t in texts)
    series = browser.execute_script(_SERIES)
    old, new = (s["data"] for s in series)
    assert len(old) == ckpt["opt"]["epochs"] and old[0] == [0, ckpt["optimizer"]["param_groups"][0]["initial_lr"]]
    assert new[0][0] == start and new[-1][0] == 399
    strokes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#lr-chart svg path')).map(p => p.getAttribute('stroke'))")
    assert "#5470c6" in strokes and "#ee6666" in strokes  # both lines are drawn

    rows = browser.find_elements("css selector", "#checks tbody tr")
    assert len(rows) == len(doc["checks"])
    assert [r.find_element("css selector", "td").text for r in rows] == [c["status"].upper() for c in doc["checks"]]
    assert_not_blank(browser, browser.get_screenshot_as_base64())


def test_resume_page_of_a_failing_plan_shows_the_fixes(browser: Any, tmp_path: Path) -> None:
    page, doc = make_report(tmp_path, "resume.html", "validate-resume", FIXTURES / "model1_release.pt",
                            "--epochs", "400", status=1)
    open_report(browser, page)
    assert embedded_json(page) == doc and doc["ok"] is False
    checks = browser.find_element("id", "checks").text
    assert "FAIL" in checks and "resume.not-resumable" in checks
    assert browser.find_elements("css selector", "#lr-chart") == []  # no curve to draw, said in words instead


def test_resume_page_draws_every_param_group(browser: Any, tmp_path: Path) -> None:
    from torch.optim import lr_scheduler

    from tests.resume.test_resume_param_groups import two_group_checkpoint

    path = tmp_path / "two_groups.pt"
    two_group_checkpoint(path, lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=12, eta_min=0.001), done=4)
    page, doc = make_report(tmp_path, "resume.html", "validate-resume", path, "--epochs", "15")
    open_report(browser, page)
    assert embedded_json(page) == doc and len(doc["group_curves"]) == 2
    texts = svg_texts(browser, "#lr-chart")
    for g in (0, 1):
        assert f"old plan · group {g}" in texts and f"resumed run · group {g}" in texts
    series = browser.execute_script(_SERIES)
    assert [s["data"] for s in series] == [c[side] for c in doc["group_curves"] for side in ("old", "new")]
    assert "resume at epoch 4" in texts
