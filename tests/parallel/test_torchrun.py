"""``torchrun --nproc-per-node 2 -m ckpttool convert``: two local ranks on 127.0.0.1 split a shard set."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ckpttool.cli import main
from tests.conftest import ROOT


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "ckpttool", *args], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_two_ranks_write_the_same_shard_set_as_one_process(dcp_folders: dict[str, Path], tmp_path: Path) -> None:
    src = dcp_folders["fsdp"]
    alone = tmp_path / "alone"
    assert main(["convert", str(src), "-o", str(alone), "--max-shard-size", "200B", "--jobs", "1"]) == 0
    done = _torchrun("convert", str(src), "-o", str(tmp_path / "ranks"), "--max-shard-size", "200B", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _hashes(tmp_path / "ranks") == _hashes(alone) and len(_hashes(alone)) >= 3
    assert done.stdout.count('"schema_version"') == 1  # rank 0 alone reports


def test_a_failure_on_one_rank_leaves_no_output(dcp_folders: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(dcp_folders["fsdp"], src)
    from ckpttool.io.formats.dcp_metadata import TensorEntry, read_metadata

    items = [c.item for k, e in read_metadata(src).entries.items() if k.startswith("model.")
             and isinstance(e, TensorEntry) for c in e.chunks if c.item.relative_path == "__1_0.distcp"]
    last = max(items, key=lambda i: i.offset)  # one model tensor's chunk now runs past the end of its file
    data = src / "__1_0.distcp"
    data.write_bytes(data.read_bytes()[: last.offset + 10])
    out = tmp_path / "out"
    done = _torchrun("convert", str(src), "-o", str(out), "--max-shard-size", "200B")
    assert done.returncode != 0
    assert "past the end" in done.stderr or "rank" in done.stderr, done.stderr[-3000:]
    assert not out.exists() or not any(out.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"] or not any(out.iterdir())
