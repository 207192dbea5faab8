"""``--jobs``: convert, diff and scan give the same output (bytes, reports) for any number of processes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from ckpttool.cli import main
from ckpttool.parallel import pool as pool_module
from tests.conftest import FIXTURES


@pytest.fixture(autouse=True)
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "MIN_PARALLEL_BYTES", 0)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_shard_set_bytes_do_not_depend_on_jobs(dcp_folders: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    from tests.dcp.test_commands import _full_state

    src = dcp_folders["fsdp"]
    outs = {}
    for jobs in ("1", "2", "3"):
        out = tmp_path / f"j{jobs}"
        assert main(["convert", str(src), "-o", str(out), "--max-shard-size", "200B", "--jobs", jobs]) == 0
        outs[jobs] = _hashes(out)
    assert outs["1"] == outs["2"] == outs["3"] and len(outs["1"]) >= 3
    full = _full_state(src)
    index = json.loads((tmp_path / "j2" / "model.safetensors.index.json").read_text())
    for name in set(index["weight_map"].values()):
        for k, v in load_file(tmp_path / "j2" / name).items():
            assert torch.equal(v, full[f"model.{k}"])
    assert not [p for p in (tmp_path / "j2").iterdir() if p.name.startswith(".")]
    again = ["convert", str(src), "-o", str(tmp_path / "j2"), "--max-shard-size", "200B", "--jobs", "2"]
    assert main(again) == 2  # the shards exist
    assert main([*again, "--force"]) == 0 and _hashes(tmp_path / "j2") == outs["1"]


def test_diff_report_does_not_depend_on_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = FIXTURES / "model1_train.pt"
    b = FIXTURES / "model2_train.pt"
    docs = []
    for jobs in ("1", "2"):
        rc = main(["diff", str(a), str(b), "--section", "all", "--json", "--jobs", jobs])
        docs.append((rc, capsys.readouterr().out))
    assert docs[0] == docs[1] and docs[0][0] == 1


def test_scan_report_does_not_depend_on_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted(FIXTURES.glob("*.pt"))]
    docs = []
    for jobs in ("1", "2"):
        rc = main(["scan", *files, "--json", "--jobs", jobs])
        docs.append((rc, capsys.readouterr().out))
    assert docs[0] == docs[1] and docs[0][0] == 1  # the malicious fixture is among them
    assert len(json.loads(docs[0][1])["files"]) == len(files)
