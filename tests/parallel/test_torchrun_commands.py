"""Every command over 2 ranks on 127.0.0.1: split where the work splits, else run by rank 0 alone.

The ranks are started by real ``torchrun``, or (to read each rank's own exit status and output,
which torchrun folds into one) as two processes with the environment torchrun gives them. Each run
is compared with the same command run as one process: the same output bytes, the same report
(printed once, by rank 0) and the same exit status on every rank.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ckpttool.cli import main
from tests.conftest import FIXTURES, ROOT
from tests.parallel.test_torchrun import _torchrun


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _ranks(*args: str) -> list[subprocess.CompletedProcess[str]]:
    """``python -m ckpttool ARGS`` as ranks 0 and 1 of a gloo group, with torchrun's environment."""
    from tests.dcp.make_folders import free_port

    port = str(free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port}
        procs.append(subprocess.Popen([sys.executable, "-m", "ckpttool", *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT))
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _alone(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(args))
    return rc, capsys.readouterr().out


def test_scan_splits_files_over_ranks(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted(FIXTURES.glob("*.pt"))]
    rc, out = _alone(capsys, "scan", *files, "--json", "--jobs", "1")
    r0, r1 = _ranks("scan", *files, "--json", "--jobs", "1")
    assert rc == r0.returncode == r1.returncode == 1, r0.stderr[-3000:]  # the malicious fixture is among them
    assert json.loads(r0.stdout) == json.loads(out) and r1.stdout == ""  # rank 0 alone reports
    assert len(json.loads(out)["files"]) == len(files)
    done = _torchrun("scan", *files, "--json")
    assert done.returncode != 0 and json.loads(done.stdout) == json.loads(out)


def test_diff_splits_pairs_over_ranks(dcp_folders: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    a, b = dcp_folders["fsdp"], dcp_folders["mesh2d"]
    rc, out = _alone(capsys, "diff", str(a), str(b), "--section", "all", "--json", "--jobs", "1")
    done = _torchrun("diff", str(a), str(b), "--section", "all", "--json")
    assert done.returncode == rc, done.stderr[-3000:]
    assert json.loads(done.stdout) == json.loads(out)
    one = FIXTURES / "model1_train.pt"
    rc, out = _alone(capsys, "diff", str(one), str(FIXTURES / "model2_train.pt"), "--section", "all", "--json")
    r0, r1 = _ranks("diff", str(one), str(FIXTURES / "model2_train.pt"), "--section", "all", "--json", "--jobs", "2")
    assert rc == r0.returncode == r1.returncode == 1, r0.stderr[-3000:]
    assert json.loads(r0.stdout) == json.loads(out) and r1.stdout == "" and r1.stderr == ""


def test_file_to_dcp_over_ranks_loads_into_sharded_tensors(tmp_path: Path) -> None:
    from tests.dcp.test_write import _reference

    ref = _reference(tmp_path / "ref.pt")
    alone = tmp_path / "alone"
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(alone), "--dcp-file-size", "64B", "--jobs", "1"]) == 0
    done = _torchrun("convert", str(tmp_path / "ref.pt"), "-o", str(tmp_path / "ranks"), "--dcp-file-size", "64B",
                     "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"schema_version"') == 1
    assert _hashes(tmp_path / "ranks") == _hashes(alone) and len(list(alone.glob("*.distcp"))) >= 3
    assert not [p for p in tmp_path.iterdir() if "ckpttool" in p.name]
    loaded = subprocess.run([sys.executable, str(ROOT / "tests" / "dcp" / "load_sharded.py"), str(tmp_path / "ranks"),
                             str(tmp_path / "ref.pt")], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert ref["epoch"] == 7


def test_dcp_to_dcp_over_ranks(dcp_folders: dict[str, Path], tmp_path: Path) -> None:
    from tests.dcp.test_commands import _full_state

    src = dcp_folders["mesh2d"]
    alone = tmp_path / "alone"
    assert main(["convert", str(src), "-o", str(alone), "--dcp-file-size", "200B", "--jobs", "1"]) == 0
    done = _torchrun("convert", str(src), "-o", str(tmp_path / "ranks"), "--dcp-file-size", "200B", "--jobs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _hashes(tmp_path / "ranks") == _hashes(alone) and len(list(alone.glob("*.distcp"))) >= 2
    want, got = _full_state(src), _full_state(tmp_path / "ranks")
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_a_dcp_write_failing_on_a_rank_leaves_no_output(dcp_folders: dict[str, Path], tmp_path: Path) -> None:
    from ckpttool.io.formats.dcp_metadata import TensorEntry, read_metadata

    src = tmp_path / "src"
    shutil.copytree(dcp_folders["fsdp"], src)
    for data in sorted(src.glob("*.distcp")):  # one chunk of each data file now runs past its end
        items = [c.item for e in read_metadata(src).entries.values() if isinstance(e, TensorEntry)
                 for c in e.chunks if c.item.relative_path == data.name]
        data.write_bytes(data.read_bytes()[: max(i.offset for i in items) + 10])
    r0, r1 = _ranks("convert", str(src), "-o", str(tmp_path / "out"), "--dcp-file-size", "200B")
    assert r0.returncode == r1.returncode == 2, r0.stderr[-3000:]
    assert r0.stderr.startswith("ckpttool: error[") and r0.stderr.count("\n") == 1 and "past the end" in r0.stderr
    assert r1.stderr == "" and r0.stdout == r1.stdout == ""  # reported once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    done = _torchrun("convert", str(src), "-o", str(tmp_path / "out"), "--dcp-file-size", "200B")
    assert done.returncode != 0 and sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_single_file_writes_run_on_rank_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "model1_train.pt"
    rc, _ = _alone(capsys, "convert", str(src), "-o", str(tmp_path / "alone.safetensors"), "--section", "model")
    done = _torchrun("convert", str(src), "-o", str(tmp_path / "ranks.safetensors"), "--section", "model", "--json")
    assert rc == 0 and done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)  # exactly one document
    assert doc["sha256"] == hashlib.sha256((tmp_path / "alone.safetensors").read_bytes()).hexdigest()
    assert (tmp_path / "ranks.safetensors").read_bytes() == (tmp_path / "alone.safetensors").read_bytes()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # the same file name: a torch archive records it
    rc, _ = _alone(capsys, "remap", str(src), "-o", str(tmp_path / "a" / "out.pt"), "--preset", "wrappers")
    done = _torchrun("remap", str(src), "-o", str(tmp_path / "b" / "out.pt"), "--preset", "wrappers", "--json")
    assert rc == 0 and done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"schema_version"') == 1
    assert (tmp_path / "b" / "out.pt").read_bytes() == (tmp_path / "a" / "out.pt").read_bytes()
    assert not [p for p in tmp_path.iterdir() if "ckpttool" in p.name]
    r0, r1 = _ranks("convert", str(src), "-o", str(tmp_path / "ranks.safetensors"), "--section", "model")
    assert r0.returncode == r1.returncode == 2  # the output exists: rank 0 refuses, rank 1 ends with its status
    assert "output exists" in r0.stderr and r0.stderr.count("\n") == 1 and r1.stderr == "", r0.stderr
    r0, r1 = _ranks("extract-ema", str(FIXTURES / "ema_pytorch.pt"), "-o", str(tmp_path / "ema.safetensors"))
    assert r0.returncode == r1.returncode == 0, r0.stderr[-3000:]
    assert r0.stdout and r1.stdout == "" and (tmp_path / "ema.safetensors").is_file()


def test_inspect_reports_once(capsys: pytest.CaptureFixture[str]) -> None:
    src = str(FIXTURES / "model1_train.pt")
    rc, out = _alone(capsys, "inspect", src, "--json")
    r0, r1 = _ranks("inspect", src, "--json")
    assert rc == r0.returncode == r1.returncode == 0, r0.stderr[-3000:]
    assert json.loads(r0.stdout) == json.loads(out) and r1.stdout == "" and r1.stderr == ""
    r0, r1 = _ranks("inspect", str(FIXTURES / "no-such-file.pt"))
    assert r0.returncode == r1.returncode == 2
    assert r0.stderr.startswith("ckpttool: error[") and r1.stderr == ""
