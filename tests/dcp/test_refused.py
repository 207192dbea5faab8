"""What cannot be read faithfully from a DCP folder is refused with one line, never guessed."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from ckpttool.cli import main


def _copy(src: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    return folder


def test_a_stream_transform_is_refused_by_name(dcp_folders: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(dcp_folders["shard1"], tmp_path)
    with (folder / ".metadata").open("rb") as f:  # written by torch (the dcp_folders fixture)
        md = pickle.load(f)
    for index, info in md.storage_data.items():
        if index.fqn == "model.w":
            info.transform_descriptors = ["zstd/1"]
    (folder / ".metadata").write_bytes(pickle.dumps(md))
    assert main(["inspect", str(folder)]) == 0  # the structure is still readable
    capsys.readouterr()
    assert main(["convert", str(folder), "-o", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "zstd/1" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_truncated_data_file_is_an_error(dcp_folders: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(dcp_folders["mesh2d"], tmp_path)
    data = folder / "__3_0.distcp"
    data.write_bytes(data.read_bytes()[:100])
    assert main(["convert", str(folder), "-o", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "__3_0.distcp" in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("name", ["shard0", "shard1"])
def test_diff_of_a_folder_with_itself_reads_its_data(dcp_folders: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], name: str) -> None:
    """Same folder, same entry is not proof of equal bytes: a missing data file is an error, not "equal"."""
    folder = _copy(dcp_folders[name], tmp_path)
    assert main(["diff", str(folder), str(folder)]) == 0
    capsys.readouterr()
    next(folder.glob("*.distcp")).unlink()
    assert main(["diff", str(folder), str(folder)]) == 2
    err = capsys.readouterr().err
    assert ".distcp" in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["inspect", "scan", "diff"])
def test_one_data_file_is_sent_to_its_folder(dcp_folders: dict[str, Path], command: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A .distcp file alone is one piece of a folder, not a corrupt zip: the error names the folder to pass."""
    folder = dcp_folders["shard0"]
    data = str(next(folder.glob("*.distcp")))
    assert main([command, data] + ([data] if command == "diff" else [])) == 2
    err = capsys.readouterr().err
    assert "torch.distributed.checkpoint folder" in err and str(folder) in err and "corrupt" not in err


def test_a_missing_chunk_is_an_error_not_zeros(dcp_folders: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(dcp_folders["mesh2d"], tmp_path)
    with (folder / ".metadata").open("rb") as f:
        md = pickle.load(f)
    md.state_dict_metadata["model.a"].chunks.pop()
    (folder / ".metadata").write_bytes(pickle.dumps(md))
    assert main(["diff", str(folder), str(dcp_folders["mesh2d"])]) == 2
    assert "do not cover" in capsys.readouterr().err
