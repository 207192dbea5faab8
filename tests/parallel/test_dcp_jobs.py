"""DCP folders written over ``--jobs`` worker processes: the same bytes for any number, loaded by torch."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from ckpttool.cli import main
from ckpttool.parallel import pool as pool_module


@pytest.fixture(autouse=True)
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "MIN_PARALLEL_BYTES", 0)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 8),
                               torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 4))


def _reference(path: Path) -> dict:
    torch.manual_seed(3)
    model = _model()
    sd = {"model": model.state_dict(), "epoch": 11, "lr": [0.1, 0.01]}
    torch.save(sd, path)
    return sd


def _dcp_load(folder: Path) -> tuple[torch.nn.Module, dict]:
    import torch.distributed.checkpoint as dcp

    model = _model()
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    target = {"model": model.state_dict(), "epoch": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(target, checkpoint_id=folder, no_dist=True)
    model.load_state_dict(target["model"], strict=True)
    return model, target


def test_file_to_dcp_bytes_do_not_depend_on_jobs(tmp_path: Path) -> None:
    ref = _reference(tmp_path / "ref.pt")
    outs = {}
    for jobs in ("1", "2", "3"):
        out = tmp_path / f"j{jobs}"
        assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(out), "--dcp-file-size", "300B",
                     "--jobs", jobs]) == 0
        outs[jobs] = _hashes(out)
    assert outs["1"] == outs["2"] == outs["3"]
    data = [n for n in outs["1"] if n.endswith(".distcp")]
    assert len(data) >= 3 and ".metadata" in outs["1"]
    model, target = _dcp_load(tmp_path / "j2")
    for k, v in ref["model"].items():
        assert torch.equal(model.state_dict()[k], v), k
    assert target["epoch"] == 11
    assert not [p for p in tmp_path.iterdir() if "ckpttool" in p.name]


def test_data_files_follow_the_size_rule(tmp_path: Path) -> None:
    ref = _reference(tmp_path / "ref.pt")
    tensors = list(ref["model"].values())
    total = sum(t.numel() * t.element_size() for t in tensors)
    for size in (total, total // 2, 1):
        out = tmp_path / f"s{size}"
        assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(out), "--dcp-file-size", f"{size}B"]) == 0
        want = min(len(tensors), -(-total // size))  # one per SIZE of tensor bytes, at most one per tensor
        assert len(list(out.glob("*.distcp"))) == want
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(tmp_path / "plain")]) == 0
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [".metadata", "__0_0.distcp"]


def test_dcp_to_dcp_over_jobs(dcp_folders: dict[str, Path], tmp_path: Path) -> None:
    from tests.dcp.test_commands import _full_state

    src = dcp_folders["fsdp"]
    outs = {}
    for jobs in ("1", "2"):
        assert main(["convert", str(src), "-o", str(tmp_path / f"j{jobs}"), "--dcp-file-size", "200B",
                     "--jobs", jobs]) == 0
        outs[jobs] = _hashes(tmp_path / f"j{jobs}")
    assert outs["1"] == outs["2"] and len(outs["1"]) >= 4
    want, got = _full_state(src), _full_state(tmp_path / "j2")
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_a_failing_worker_leaves_no_output(dcp_folders: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from ckpttool.io.formats.dcp_metadata import TensorEntry, read_metadata

    src = tmp_path / "src"
    shutil.copytree(dcp_folders["fsdp"], src)
    items = [c.item for e in read_metadata(src).entries.values() if isinstance(e, TensorEntry)
             for c in e.chunks if c.item.relative_path == "__1_0.distcp"]
    last = max(items, key=lambda i: i.offset)  # a chunk now runs past the end of its file
    data = src / "__1_0.distcp"
    data.write_bytes(data.read_bytes()[: last.offset + 10])
    capsys.readouterr()
    assert main(["convert", str(src), "-o", str(tmp_path / "out"), "--dcp-file-size", "200B", "--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ckpttool: error[") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_dcp_file_size_needs_a_dcp_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _reference(tmp_path / "ref.pt")
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(tmp_path / "x.safetensors"),
                 "--dcp-file-size", "1MB"]) == 2
    assert "--dcp-file-size" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
