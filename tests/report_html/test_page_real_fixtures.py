"""Pages made from checkpoints that real libraries wrote (Lightning, ultralytics, timm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.conftest import FIXTURES
from tests.oracle import torch_load
from tests.report_html.browser import embedded_json, open_report, svg_texts
from tests.report_html.conftest import make_report, top_modules


def _listed(browser: Any, selector: str) -> set[str]:
    return set(browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.dataset.module)", selector))


def test_lightning_checkpoint_inspect_and_resume(browser: Any, tmp_path: Path) -> None:
    ckpt = torch.load(FIXTURES / "lightning.ckpt", map_location="cpu", weights_only=False)
    page, doc = make_report(tmp_path, "inspect.html", "inspect", FIXTURES / "lightning.ckpt")
    open_report(browser, page)
    assert embedded_json(page) == doc
    expected = set(top_modules(ckpt["state_dict"]).values())
    assert len(expected) > 1 and all(m.startswith("model.") for m in expected)  # below Lightning's "model."
    assert _listed(browser, "#treemap-modules [data-module]") == expected
    assert len(browser.find_elements("css selector", "#tensors tbody tr")) == sum(
        len(s.get("tensors", {})) for s in doc["sections"].values())

    page, doc = make_report(tmp_path, "resume.html", "validate-resume", FIXTURES / "lightning.ckpt", "--epochs", "40")
    open_report(browser, page)
    assert embedded_json(page) == doc
    assert f"resume at epoch {doc['start_epoch']}" in svg_texts(browser, "#lr-chart")


def test_lightning_checkpoint_diff_after_a_change(browser: Any, tmp_path: Path) -> None:
    ckpt = torch.load(FIXTURES / "lightning.ckpt", map_location="cpu", weights_only=False)
    tuned = dict(ckpt, state_dict={k: v.clone() for k, v in ckpt["state_dict"].items()})
    first = next(k for k in tuned["state_dict"] if k.endswith(".weight"))
    tuned["state_dict"][first][0] += 0.25
    torch.save(tuned, tmp_path / "tuned.ckpt")
    a, b = ckpt["state_dict"], torch.load(tmp_path / "tuned.ckpt", weights_only=False)["state_dict"]
    top = top_modules(a)
    changed = {top[k] for k in a if not torch.equal(a[k], b[k])}
    assert changed == {top[first]}
    page, doc = make_report(tmp_path, "diff.html", "diff", FIXTURES / "lightning.ckpt", tmp_path / "tuned.ckpt",
                            status=1)
    open_report(browser, page)
    assert embedded_json(page) == doc
    assert _listed(browser, "#diff-modules > li[data-changed=true]") == changed
    assert _listed(browser, "#diff-modules > li") == set(top.values())


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch_load(path)
    return (ckpt["model"] if ckpt["model"] is not None else ckpt["ema"]).state_dict()


def test_real_ultralytics_checkpoint(browser: Any, tmp_path: Path) -> None:
    last, final = FIXTURES / "gpu" / "ultralytics_real_last.pt", FIXTURES / "gpu" / "ultralytics_real_final.pt"
    model = _weights(last)  # ultralytics saves 'model' as None in last.pt: the EMA is the model
    page, doc = make_report(tmp_path, "inspect.html", "inspect", last)
    open_report(browser, page)
    assert embedded_json(page) == doc
    assert _listed(browser, "#treemap-modules [data-module]") == set(top_modules(model).values())

    a, b = model, _weights(final)
    top = top_modules(set(a) | set(b))
    changed = {top[k] for k in top
               if k not in a or k not in b or a[k].shape != b[k].shape or a[k].dtype != b[k].dtype
               or not torch.equal(a[k], b[k])}
    page, doc = make_report(tmp_path, "diff.html", "diff", last, final, status=1 if changed else 0)
    open_report(browser, page)
    assert embedded_json(page) == doc
    assert _listed(browser, "#diff-modules > li[data-changed=true]") == changed


def test_real_timm_checkpoint_resume(browser: Any, tmp_path: Path) -> None:
    path = FIXTURES / "gpu" / "timm_real" / "last.pth.tar"
    epoch = torch.load(path, map_location="cpu", weights_only=False)["epoch"]
    page, doc = make_report(tmp_path, "resume.html", "validate-resume", path, "--epochs", str(epoch + 10),
                            status=None)
    open_report(browser, page)
    assert embedded_json(page) == doc
    rows = browser.find_elements("css selector", "#checks tbody tr")
    assert len(rows) == len(doc["checks"])
