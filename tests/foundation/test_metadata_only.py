"""inspect and scan never import torch (or numpy) and never read tensor bytes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import FIXTURES

PROBE = textwrap.dedent("""
    import json, sys
    import ckpttool.io.source as source
    read = {"bytes": 0}
    original = source.FileSource.read
    def counting(self, offset, length):
        read["bytes"] += length
        return original(self, offset, length)
    source.FileSource.read = counting
    from ckpttool.cli import main
    code = main(sys.argv[1:])
    sys.stdout.flush()
    print(json.dumps({"code": code, "torch": "torch" in sys.modules, "numpy": "numpy" in sys.modules,
                      "read": read["bytes"]}), file=sys.stderr)
""")


def _probe(*args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.pt"
    torch.save({f"layer{i}.weight": torch.zeros(256, 256) for i in range(64)}, path)  # 16 MiB of tensors
    return path


@pytest.mark.parametrize("command", [["inspect", "--json"], ["inspect"], ["inspect", "--keys"], ["scan"]])
def test_no_torch_and_no_tensor_bytes(big_checkpoint: Path, command: list[str]) -> None:
    result = _probe(command[0], str(big_checkpoint), *command[1:])
    assert result["code"] == 0
    assert result["torch"] is False
    assert result["numpy"] is False
    assert result["read"] < 256 * 1024, result  # the index and the pickle, not 16 MiB of tensors


def test_training_checkpoint_inspect_stays_torch_free() -> None:
    result = _probe("inspect", str(FIXTURES / "model1_train.pt"), "--json")
    assert result["code"] == 0 and result["torch"] is False


def test_stats_reads_bytes_but_not_torch(big_checkpoint: Path) -> None:
    result = _probe("inspect", str(big_checkpoint), "--stats", "--json")
    assert result["code"] == 0 and result["torch"] is False
    assert result["read"] >= 16 * 1024 * 1024
