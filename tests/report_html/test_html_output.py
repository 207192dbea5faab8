"""The HTML file itself: self-contained, data embedded faithfully, written safely; no browser needed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ckpttool.cli import main
from ckpttool.report.html import render_html
from tests.conftest import FIXTURES, ROOT, run_cli
from tests.report_html.browser import embedded_json

_NETWORK_JS = ("fetch(", "XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon", "importScripts", "import(")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pages")
    runs = {"inspect": ("inspect", FIXTURES / "model1_train.pt"),
            "diff": ("diff", FIXTURES / "model1_train.pt", FIXTURES / "model1_release.pt"),
            "resume": ("validate-resume", FIXTURES / "model1_train.pt", "--epochs", "400")}
    for name, args in runs.items():
        proc = run_cli(*args, "--html", out / f"{name}.html")
        assert proc.returncode in (0, 1), proc.stderr
    return {name: out / f"{name}.html" for name in runs}


@pytest.mark.parametrize("kind", ["inspect", "diff", "resume"])
def test_page_asks_the_network_for_nothing(pages: dict[str, Path], kind: str) -> None:
    parser = _Collect()
    parser.feed(pages[kind].read_text(encoding="utf-8"))
    for tag, attrs in parser.tags:
        assert "src" not in attrs, (tag, attrs)  # every script is inline
        if tag == "link":
            assert not re.match(r"\s*(https?:)?//", attrs.get("href") or ""), attrs
    css = "".join(parser.styles)
    assert "@import" not in css and not re.search(r"url\(\s*['\"]?\s*(https?:)?//", css)
    assert not re.search(r"url\(", css)
    code = "".join(parser.scripts)
    assert [word for word in _NETWORK_JS if word in code] == []
    assert len(parser.scripts) == 4  # the data, ECharts, the shared helpers, the page


def test_embedded_json_survives_script_breaking_text(tmp_path: Path) -> None:
    doc = {"schema_version": 1, "path": "</script><script>alert(1)</script><!-- & \u2028 ü",
           "sections": {}, "findings": [{"code": "x", "severity": "warn", "message": "<b>&amp;</b>"}]}
    page = tmp_path / "p.html"
    page.write_text(render_html("inspect", doc, title="</title>"), encoding="utf-8")
    text = page.read_text(encoding="utf-8")
    assert text.count("</script>") == 4 and "<script>alert" not in text and "</title></title>" not in text
    assert embedded_json(page) == doc


def test_exit_status_and_stdout_are_unchanged_by_html(tmp_path: Path) -> None:
    args = ("diff", FIXTURES / "model1_train.pt", FIXTURES / "model1_release.pt", "--json")
    plain, with_html = run_cli(*args), run_cli(*args, "--html", tmp_path / "d.html")
    assert plain.returncode == with_html.returncode == 1
    assert json.loads(plain.stdout) == json.loads(with_html.stdout) == embedded_json(tmp_path / "d.html")


def test_refuses_to_write_over_an_input_or_a_foreign_file(tmp_path: Path) -> None:
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes((FIXTURES / "model1_state_dict.pt").read_bytes())
    before = ckpt.read_bytes()
    proc = run_cli("inspect", ckpt, "--html", ckpt)
    assert proc.returncode == 2 and "error[output-refused]" in proc.stderr and "Traceback" not in proc.stderr
    assert ckpt.read_bytes() == before
    other = tmp_path / "notes.html"
    other.write_text("my notes")
    proc = run_cli("inspect", ckpt, "--html", other)
    assert proc.returncode == 2 and "exists" in proc.stderr and other.read_text() == "my notes"
    report = tmp_path / "r.html"
    assert run_cli("inspect", ckpt, "--html", report).returncode == 0
    assert run_cli("inspect", FIXTURES / "model1_train.pt", "--html", report).returncode == 0  # a report is replaced
    assert embedded_json(report)["path"].endswith("model1_train.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.html", "r.html"]  # no temporaries left


def test_open_needs_html(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(FIXTURES / "model1_state_dict.pt"), "--open"]) == 2
    assert "--open needs --html" in capsys.readouterr().err


def test_without_the_extra_html_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError
    for args in (["inspect", str(FIXTURES / "model1_state_dict.pt")],
                 ["diff", str(FIXTURES / "model1_state_dict.pt"), str(FIXTURES / "model1_state_dict.pt")],
                 ["validate-resume", str(FIXTURES / "model1_train.pt"), "--epochs", "400"]):
        assert main([*args, "--html", str(tmp_path / "x.html")]) == 2
        err = capsys.readouterr().err
        assert "pip install 'ckpttool[report]'" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_inspect_html_still_does_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; from ckpttool.cli import main; "
            f"rc = main(['inspect', {str(FIXTURES / 'model1_train.pt')!r}, '--html', {str(tmp_path / 'i.html')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.stdout.split()[-2:] == ["0", "False"], proc.stderr


def test_open_shows_the_written_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)  # never a real browser in tests
    out = tmp_path / "r.html"
    assert main(["validate-resume", str(FIXTURES / "model1_train.pt"), "--epochs", "400", "--no-plot",
                 "--html", str(out), "--open"]) == 0
    assert opened == [out.resolve().as_uri()] and out.is_file()
