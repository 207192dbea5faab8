"""The malicious fixture: nothing runs, and scan names the global and exits 1."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import FIXTURES, run_cli

MARKER = "ckpttool_marker_pwned"


def test_inspect_and_scan_never_run_the_payload(tmp_path: Path) -> None:
    inspect = run_cli("inspect", FIXTURES / "malicious_reduce.pt", "--json", cwd=tmp_path)
    scan = run_cli("scan", FIXTURES / "malicious_reduce.pt", "--json", cwd=tmp_path)
    assert not (tmp_path / MARKER).exists()
    assert inspect.returncode == 0
    report = json.loads(inspect.stdout)
    unsafe = [f for f in report["findings"] if f["code"] == "unsafe.global"]
    assert unsafe and "system" in unsafe[0]["message"] and unsafe[0]["where"] == "payload"
    assert scan.returncode == 1
    files = json.loads(scan.stdout)["files"]
    assert files[0]["dangerous"] and files[0]["dangerous"][0].endswith(".system")


def test_scan_clean_file_exits_0() -> None:
    proc = run_cli("scan", FIXTURES / "model1_state_dict.pt", FIXTURES / "model1_state_dict.safetensors")
    assert proc.returncode == 0, proc.stdout + proc.stderr
