"""Shared test helpers: fixture paths, running the CLI, and torch as the oracle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ckpttool ARGS`` in a child process, as a user would."""
    return subprocess.run([sys.executable, "-m", "ckpttool", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=timeout)
