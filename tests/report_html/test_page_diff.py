"""The diff page: the module map marks exactly the modules torch finds changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.conftest import FIXTURES
from tests.oracle import torch_load
from tests.report_html.browser import assert_not_blank, embedded_json, embedded_json_in_browser, open_report, svg_texts
from tests.report_html.conftest import make_report


def _marked(browser: Any) -> dict[str, str]:
    return browser.execute_script(
        "const out = {}; document.querySelectorAll('#diff-modules > li').forEach("
        "li => { out[li.dataset.module] = li.dataset.changed; }); return out;")


def _changed_modules(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> set[str]:
    keys = set(a) | set(b)
    return {k.split(".")[0] for k in keys
            if k not in a or k not in b or a[k].shape != b[k].shape or a[k].dtype != b[k].dtype
            or not torch.equal(a[k], b[k])}


def test_diff_page_marks_exactly_the_modules_that_changed(browser: Any, tmp_path: Path) -> None:
    original = torch_load(FIXTURES / "model1_state_dict.pt")
    tuned = {k: v.clone() for k, v in original.items()}
    tuned["conv2.weight"][0, 0, 0, 0] += 0.5
    tuned["fc3.bias"] *= 1.1
    torch.save(tuned, tmp_path / "tuned.pt")
    expected = _changed_modules(original, torch.load(tmp_path / "tuned.pt", weights_only=True))
    assert expected == {"conv2", "fc3"}

    page, doc = make_report(tmp_path, "diff.html", "diff", FIXTURES / "model1_state_dict.pt", tmp_path / "tuned.pt",
                            status=1)
    open_report(browser, page)
    assert embedded_json(page) == doc
    assert embedded_json_in_browser(browser) == doc
    marked = _marked(browser)
    assert set(marked) == {k.split(".")[0] for k in original}
    assert {m for m, v in marked.items() if v == "true"} == expected
    assert set(svg_texts(browser, "#diff-tree")) >= {"fc1"}  # the module map is drawn, labelled in SVG

    rows = browser.find_elements("css selector", "#changed tbody tr")
    assert sorted(r.find_element("css selector", "td").text for r in rows) == ["conv2.weight", "fc3.bias"]
    browser.find_element("id", "diff-metric").send_keys("max")  # switch the colouring; marks stay the same
    assert {m for m, v in _marked(browser).items() if v == "true"} == expected
    assert_not_blank(browser, browser.get_screenshot_as_base64())


def test_diff_page_of_training_run_against_release_with_rules(browser: Any, tmp_path: Path) -> None:
    train = torch_load(FIXTURES / "model1_train.pt")["model"].state_dict()
    release = torch_load(FIXTURES / "model1_release.pt")["model"].state_dict()
    expected = _changed_modules(train, release)
    page, doc = make_report(tmp_path, "diff.html", "diff", FIXTURES / "model1_train.pt", FIXTURES / "model1_release.pt",
                            "--fail-on", "fc*:max_abs>0.0001", status=1)
    open_report(browser, page)
    assert embedded_json(page) == doc
    assert {m for m, v in _marked(browser).items() if v == "true"} == expected
    rules = browser.find_element("id", "rules").text
    assert "fc*:max_abs>0.0001" in rules and "FAIL" in rules
    broke = [k for k in release if k.startswith("fc") and (train[k].float() - release[k].float()).abs().max() > 1e-4]
    assert broke and all(k in rules for k in broke)


def test_diff_page_of_all_sections_lists_one_sided_keys(browser: Any, tmp_path: Path) -> None:
    page, doc = make_report(tmp_path, "diff.html", "diff", FIXTURES / "model1_train.pt", FIXTURES / "model1_release.pt",
                            "--section", "all", status=1)
    open_report(browser, page)
    assert embedded_json(page) == doc
    marked = _marked(browser)
    assert marked["ema"] == "true"  # the release drops the EMA
    only_a = browser.find_element("id", "only-in-a").text.split()
    assert sorted(only_a) == sorted(doc["only_in_a"]) and "ema.fc1.weight" in only_a
    assert "epoch" in browser.find_element("id", "meta").text
