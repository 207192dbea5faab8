"""Every hostile case: no marker appears, nothing the file names is imported, and the globals are named.

A case is read three ways (the scan operation, ``ckpttool.open`` and the CLI) with the working
directory set to the corpus folder, where a payload that ran would leave ``PWNED-<case>``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import ckpttool
from ckpttool.cli import main
from ckpttool.errors import CkptError
from ckpttool.ops.scan import scan_file
from tests.conftest import run_cli
from tests.hostile.hostile_corpus import CASES, Case

Corpus = tuple[Path, dict[str, Path]]


def _no_marker(folder: Path) -> None:
    assert not list(folder.glob("PWNED-*")), "a payload ran"


def test_corpus_has_at_least_30_distinct_cases() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 30
    assert len({c.filename for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_scan_names_every_dangerous_global(case: Case, corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, files = corpus
    monkeypatch.chdir(folder)
    modules_before = set(sys.modules)
    result = scan_file(files[case.name])
    _no_marker(folder)
    assert set(case.names) <= set(result.dangerous), result.dangerous
    if case.readable:
        assert result.error is None, result.error
        assert result.status == "dangerous"
    else:
        assert result.error is not None, "an unreadable file must never be called clean"
        assert result.status in ("dangerous", "unreadable")
    named = {g.name.split(".")[0] for g in result.globals} | {g.name.rsplit(".", 1)[0] for g in result.globals}
    imported = (set(sys.modules) - modules_before) & named
    assert not imported, f"reading imported a module the file names: {imported}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_open_reports_unsafe_globals_or_refuses(case: Case, corpus: Corpus,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder, files = corpus
    monkeypatch.chdir(folder)
    try:
        ckpt = ckpttool.open(files[case.name])
    except CkptError as exc:
        assert not case.readable, f"{case.name} should be readable: {exc.one_line()}"
        assert "\n" not in exc.one_line()
        _no_marker(folder)
        return
    _no_marker(folder)
    assert case.readable, "the reader accepted a file it must refuse"
    unsafe = [f.message for f in ckpt.findings if f.code == "unsafe.global" and f.severity == "error"]
    for name in case.names:
        assert any(name in m for m in unsafe), (name, unsafe)
        assert any(g.name == name and g.kind == "dangerous" for g in ckpt.globals)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_inspect_cli_never_runs_or_crashes(case: Case, corpus: Corpus, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder, files = corpus
    monkeypatch.chdir(folder)
    code = main(["inspect", str(files[case.name]), "--json"])
    out, err = capsys.readouterr()
    _no_marker(folder)
    assert "internal-error" not in err and "Traceback" not in err
    if case.readable:
        assert code == 0, err
        report = json.loads(out)
        found = {g["name"] for g in report["globals"] if g["kind"] == "dangerous"}
        assert set(case.names) <= found
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_scan_cli_over_the_whole_corpus(corpus: Corpus) -> None:
    """One child process, cwd in the corpus: exit 1, every file named, nothing ran, no traceback."""
    folder, files = corpus
    proc = run_cli("scan", "--json", *(files[c.name] for c in CASES), cwd=folder, timeout=120)
    _no_marker(folder)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["schema_version"] == 1
    by_path = {Path(f["path"]).name: f for f in report["files"]}
    for case in CASES:
        entry = by_path[case.filename]
        assert set(case.names) <= set(entry["dangerous"]), (case.name, entry["dangerous"])
        assert entry["status"] != "clean"


def test_one_unreadable_file_alone_exits_2(corpus: Corpus) -> None:
    folder, files = corpus
    dup = files["zip_duplicate_evil_first"]
    proc = run_cli("scan", dup, cwd=folder)
    assert proc.returncode == 2
    assert "two entries named" in proc.stdout + proc.stderr
