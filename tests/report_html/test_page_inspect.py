"""The inspect page in headless Chromium, checked against torch's own reading of the fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.conftest import FIXTURES
from tests.oracle import torch_load
from tests.report_html.browser import assert_not_blank, embedded_json, embedded_json_in_browser, open_report, svg_texts
from tests.report_html.conftest import make_report


def _top_modules(keys: list[str]) -> set[str]:
    return {k.split(".")[0] for k in keys}


def test_inspect_page_draws_the_training_checkpoint(browser: Any, tmp_path: Path) -> None:
    page, doc = make_report(tmp_path, "inspect.html", "inspect", FIXTURES / "model1_train.pt")
    open_report(browser, page)
    assert embedded_json(page) == doc
    assert embedded_json_in_browser(browser) == doc

    model = torch_load(FIXTURES / "model1_train.pt")["model"].state_dict()
    expected = _top_modules(list(model))
    listed = browser.execute_script(
        "return Array.from(document.querySelectorAll('#treemap [data-module]')).map(e => e.dataset.module)")
    assert set(listed) == expected
    drawn = set(svg_texts(browser, "#treemap"))
    largest = max(expected, key=lambda m: sum(t.numel() for k, t in model.items() if k.split(".")[0] == m))
    assert largest in drawn  # the biggest module is labelled in the SVG itself
    assert "weight" in drawn

    header = browser.find_element("id", "summary").text
    assert "torch-zip" in header and "yolov5" in header

    rows = browser.find_elements("css selector", "#tensors tbody tr")
    assert len(rows) == 2 * len(model)  # the model and the EMA
    assert_not_blank(browser, browser.get_screenshot_as_base64())


def test_inspect_filter_and_sort(browser: Any, tmp_path: Path) -> None:
    page, _ = make_report(tmp_path, "inspect.html", "inspect", FIXTURES / "model1_state_dict.pt")
    open_report(browser, page)
    sd = torch_load(FIXTURES / "model1_state_dict.pt")
    box = browser.find_element("css selector", "#tensors input[type=search]")
    box.send_keys("fc1")
    rows = browser.find_elements("css selector", "#tensors tbody tr")
    keys = [r.find_elements("css selector", "td")[1].text for r in rows]
    assert sorted(keys) == sorted(k for k in sd if "fc1" in k)
    box.clear()
    box.send_keys(" ")  # an empty filter shows everything again
    browser.find_element("css selector", "#tensors th[data-key=nbytes]").click()
    cells = [r.find_elements("css selector", "td") for r in browser.find_elements("css selector", "#tensors tbody tr")]
    assert len(cells) == len(sd)
    sizes = [int(c[6].text.replace(",", "")) for c in cells]
    assert sizes == sorted((t.numel() * t.element_size() for t in sd.values()), reverse=True)


def test_inspect_page_shows_findings_of_a_malicious_file(browser: Any, tmp_path: Path) -> None:
    page, doc = make_report(tmp_path, "bad.html", "inspect", FIXTURES / "malicious_reduce.pt")
    open_report(browser, page)
    assert embedded_json(page) == doc
    text = browser.find_element("id", "findings").text
    assert any(f["code"] == "unsafe.global" for f in doc["findings"])
    assert "unsafe.global" in text and "system" in text


def test_table_of_more_than_5000_tensors_is_paged(browser: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    many = {f"blocks.{i}.scale": torch.full((1,), float(i)) for i in range(6100)}
    save_file(many, str(tmp_path / "many.safetensors"))
    page, doc = make_report(tmp_path, "many.html", "inspect", tmp_path / "many.safetensors")
    open_report(browser, page)
    assert len(doc["sections"]["model"]["tensors"]) == 6100
    rows = lambda: browser.find_elements("css selector", "#tensors tbody tr")  # noqa: E731
    assert len(rows()) == 5000
    assert "page 1 of 2" in browser.find_element("css selector", "#tensors .pager").text
    browser.find_element("css selector", "#tensors .pager .next").click()
    assert len(rows()) == 1100
    box = browser.find_element("css selector", "#tensors input[type=search]")
    box.send_keys("blocks.610")  # the filter searches every page
    keys = [r.find_elements("css selector", "td")[1].text for r in rows()]
    assert keys == [k for k in doc["sections"]["model"]["tensors"] if "blocks.610" in k]


def test_markup_in_keys_stays_text(browser: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from selenium.webdriver.common.action_chains import ActionChains

    key = "<img src=x onerror=pwned=1>.weight"
    save_file({key: torch.ones(4, 4)}, str(tmp_path / "hostile.safetensors"))
    page, doc = make_report(tmp_path, "hostile.html", "inspect", tmp_path / "hostile.safetensors")
    open_report(browser, page)
    assert list(doc["sections"]["model"]["tensors"]) == [key]
    ActionChains(browser).move_to_element(browser.find_element("id", "treemap-chart")).perform()  # tooltip
    browser.execute_script("return new Promise(r => setTimeout(r, 300))")
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return typeof pwned") == "undefined"
    assert key in browser.find_element("id", "tensors").text
    tooltip = browser.execute_script(
        "return Array.from(document.querySelectorAll('#treemap-chart div')).map(d => d.innerText).join('\\n')")
    assert key in tooltip and "elements: 16" in tooltip  # the tooltip shows the key as text


def test_stats_columns_with_inspect_stats(browser: Any, tmp_path: Path) -> None:
    page, doc = make_report(tmp_path, "stats.html", "inspect", FIXTURES / "model1_state_dict.pt", "--stats")
    open_report(browser, page)
    assert embedded_json(page) == doc
    sd = torch_load(FIXTURES / "model1_state_dict.pt")
    heads = [th.text.strip() for th in browser.find_elements("css selector", "#tensors thead th")]
    assert heads[-6:] == ["min", "max", "mean", "std", "nan", "inf"]
    for row in browser.find_elements("css selector", "#tensors tbody tr"):
        cells = [td.text for td in row.find_elements("css selector", "td")]
        t = sd[cells[1]].double()
        assert abs(float(cells[-4]) - t.mean().item()) <= 1e-3 * abs(t.mean().item()) + 1e-12  # 4 digits shown
        assert float(cells[-6]) == float(f"{t.min().item():.4g}") and cells[-2:] == ["0", "0"]


def test_treemap_drills_down_on_click(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page, _ = make_report(tmp_path, "inspect.html", "inspect", FIXTURES / "model1_state_dict.pt")
    open_report(browser, page)
    sd = torch_load(FIXTURES / "model1_state_dict.pt")
    share = {m: sum(t.numel() for k, t in sd.items() if k.split(".")[0] == m) / sum(t.numel() for t in sd.values())
             for m in {k.split(".")[0] for k in sd}}
    largest = max(share, key=share.__getitem__)
    assert share[largest] > 0.5  # it fills the left of the map
    before = svg_texts(browser, "#treemap")
    others = {m for m in share if m in before and m != largest}
    assert others
    chart = browser.find_element("id", "treemap-chart")
    # a click on one of its tensors shows that tensor's module alone
    ActionChains(browser).move_to_element_with_offset(chart, -chart.size["width"] // 4, 0).click().perform()
    browser.execute_script("return new Promise(r => setTimeout(r, 500))")
    after = svg_texts(browser, "#treemap")
    assert largest in after and not (others & set(after))  # only the largest module is drawn now
    crumbs = browser.find_elements("css selector", "#treemap-chart svg text")
    next(c for c in reversed(crumbs) if c.text == "model").click()  # the path bar goes back up
    browser.execute_script("return new Promise(r => setTimeout(r, 500))")
    assert others <= set(svg_texts(browser, "#treemap"))
