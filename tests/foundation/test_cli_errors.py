"""Bad input: one line on stderr naming the file, exit status 2, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_cli


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    return {"missing": tmp_path / "nope.pt", "truncated": FIXTURES / "truncated.pt",
            "random": random_bytes, "empty": empty, "directory": tmp_path}


@pytest.mark.parametrize("case", ["missing", "truncated", "random", "empty", "directory"])
@pytest.mark.parametrize("command", ["inspect", "scan"])
def test_bad_input_one_line_exit_2(tmp_path: Path, case: str, command: str) -> None:
    path = _bad_inputs(tmp_path)[case]
    proc = run_cli(command, path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    if command == "inspect":
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ckpttool: error[")
        assert str(path) in lines[0]


def test_extension_lie_is_read_by_bytes(tmp_path: Path) -> None:
    liar = tmp_path / "weights.safetensors"
    liar.write_bytes((FIXTURES / "model1_state_dict.pt").read_bytes())
    proc = run_cli("inspect", liar, "--json")
    assert proc.returncode == 0
    assert '"format.extension-mismatch"' in proc.stdout


def test_help_has_examples() -> None:
    for command in ("inspect", "scan"):
        proc = run_cli(command, "--help")
        assert proc.returncode == 0 and "Examples:" in proc.stdout
