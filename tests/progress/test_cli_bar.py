"""The CLI's bar: drawn on a terminal's stderr only, never on a pipe, never into stdout.

No timing is asserted: ``CKPTTOOL_PROGRESS_DELAY=0`` (the test-only override of the ~1 s delay)
makes the bar appear at once for any job that is not already done.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ckpttool.cli import main
from tests.conftest import FIXTURES, ROOT


@pytest.fixture
def model_pt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8)).state_dict(), path)
    return path


def _on_a_terminal(*args: str) -> tuple[int, str, bytes]:
    """Run ``python -m ckpttool ARGS`` with stderr on a pseudo-terminal and stdout on a pipe."""
    master, slave = pty.openpty()
    env = {**os.environ, "CKPTTOOL_PROGRESS_DELAY": "0", "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "ckpttool", *args], stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=120), out, b"".join(chunks)


@pytest.mark.parametrize("command", ["convert", "scan", "diff"])
def test_bar_on_a_terminal_stays_out_of_stdout(command: str, model_pt: Path, tmp_path: Path) -> None:
    args = {"convert": ["convert", str(model_pt), "-o", str(tmp_path / "m.safetensors"), "--json", "--force"],
            "scan": ["scan", str(model_pt), str(FIXTURES / "model1_train.pt"), "--json"],
            "diff": ["diff", str(FIXTURES / "model1_train.pt"), str(FIXTURES / "model2_train.pt"), "--json"]}[command]
    label = {"convert": b"writing + verifying", "scan": b"scanning", "diff": b"comparing"}[command]
    rc, out, terminal = _on_a_terminal(*args)
    assert rc in (0, 1)
    json.loads(out)  # stdout is exactly the JSON document
    assert label in terminal and b"\xe2\x94\x81" in terminal  # the label and rich's bar glyph

    rc2, out2, quiet = _on_a_terminal(*args, "--no-progress")
    assert rc2 == rc and json.loads(out2) is not None
    assert label not in quiet and b"\xe2\x94\x81" not in quiet


def test_no_bar_when_stderr_is_not_a_terminal(model_pt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CKPTTOOL_PROGRESS_DELAY", "0")
    out = tmp_path / "m.safetensors"
    assert main(["convert", str(model_pt), "-o", str(out), "--json"]) == 0
    captured = capfd.readouterr()
    assert captured.err == ""
    assert json.loads(captured.out)["output"] == str(out)
    proc = subprocess.run([sys.executable, "-m", "ckpttool", "convert", str(model_pt), "-o",
                           str(tmp_path / "m2.safetensors")], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "CKPTTOOL_PROGRESS_DELAY": "0"}, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""


def test_only_rank_zero_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    from ckpttool.cli import progress as progress_module

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    for name, value in {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    with progress_module.progress_bar("writing") as bar:
        assert bar is None
    monkeypatch.setenv("RANK", "0")
    with progress_module.progress_bar("writing") as bar:
        assert bar is not None and "rank 0 of 2" in bar.label
