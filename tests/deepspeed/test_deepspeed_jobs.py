"""``convert DS_FOLDER --max-shard-size --jobs N``: the consolidation runs in N processes (each shard a
unit, its tensors assembled from the ranks' partitions there) and writes the same bytes for any N,
which are DeepSpeed's own consolidation (recorded in the manifest when the fixtures were made)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ckpttool.cli import main
from ckpttool.parallel import pool as pool_module
from tests.deepspeed.helpers import CASES, DS, expected_fp32
from tests.deepspeed.test_deepspeed_convert import _rows


@pytest.fixture(autouse=True)
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "MIN_PARALLEL_BYTES", 0)  # the fixtures are KBs: fork anyway


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("name", ["zero2_fp16_2ranks", "zero3_bf16_2ranks", "zero3_bf16_2ranks_subgroups"])
def test_shard_set_bytes_do_not_depend_on_jobs(name: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    outs = {}
    for jobs in ("1", "2", "3"):
        out = tmp_path / f"j{jobs}"
        assert main(["convert", str(DS / name), "-o", str(out), "--max-shard-size", "300B", "--jobs", jobs]) == 0
        outs[jobs] = _hashes(out)
    assert outs["1"] == outs["2"] == outs["3"] and len(outs["1"]) >= 3
    folder = tmp_path / "j3"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    got = {}
    for shard in sorted(set(index["weight_map"].values())):
        got.update(load_file(folder / shard))
    expected = {r[0]: r for r in expected_fp32(name)}
    tied = CASES[name]["fp32_same_tensor"]
    assert set(got) == set(expected) - set(tied)
    assert all(r == expected[r[0]] for r in _rows(got))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
