"""The hooks in .pre-commit-hooks.yaml, run by the real pre-commit on a throwaway repository.

The hook repository is a local git repository holding the manifest, so pre-commit clones it without
the network; the ``ckpttool-scan-system`` hook runs the ckpttool of this environment (the
``language: python`` hook would build an environment with pip, which needs the network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

pytest.importorskip("pre_commit")


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
                           *args], cwd=cwd, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copy(ROOT / ".pre-commit-hooks.yaml", hooks)
    _git(hooks, "init", "-q")
    _git(hooks, "add", ".")
    _git(hooks, "commit", "-qm", "hooks")
    rev = _git(hooks, "rev-parse", "HEAD")
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q")
    (work / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {hooks}\n  rev: {rev}\n  hooks:\n  - id: ckpttool-scan-system\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return work, env


def _run_hook(work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pre_commit", "run"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)


def test_manifest_is_valid() -> None:
    manifest = ROOT / ".pre-commit-hooks.yaml"
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "validate-manifest", str(manifest)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_clean_checkpoints_pass_and_other_files_are_not_scanned(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    for name in ("model1_state_dict.pt", "model1_state_dict.safetensors", "timm_checkpoint.pth.tar", "lightning.ckpt"):
        shutil.copy(FIXTURES / name, work)
    (work / "notes.txt").write_text("not a checkpoint\n")
    (work / "archive.tar").write_bytes(b"not a checkpoint either")
    _git(work, "add", ".")
    proc = _run_hook(work, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout


@pytest.mark.parametrize("name", ["weights.pth", "weights.pth.tar", "pytorch_model.bin"])
def test_malicious_checkpoint_fails_the_commit(name: str, repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    shutil.copy(FIXTURES / "model1_state_dict.pt", work)
    shutil.copy(FIXTURES / "malicious_reduce.pt", work / name)
    _git(work, "add", ".")
    proc = _run_hook(work, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Failed" in proc.stdout and "DANGEROUS" in proc.stdout and "posix.system" in proc.stdout
    assert not list(work.glob("ckpttool_marker_pwned*"))
