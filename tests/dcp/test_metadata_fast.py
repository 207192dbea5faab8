"""Large ``.metadata`` files go through the C unpickler in a child; it must agree with the safe VM."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import ckpttool
from ckpttool.io.formats import dcp_fast
from ckpttool.io.formats.dcp_metadata import BytesEntry, TensorEntry, read_metadata
from tests.dcp.conftest import FOLDERS


def _summary(folder: Path) -> dict:
    meta = read_metadata(folder)
    out = {}
    for fqn, e in meta.entries.items():
        if isinstance(e, TensorEntry):
            out[fqn] = (e.dtype, e.shape, [(c.offsets, c.sizes, c.item) for c in e.chunks], meta.paths[fqn])
        else:
            assert isinstance(e, BytesEntry)
            out[fqn] = (e.item, meta.paths[fqn])
    return out


@pytest.mark.parametrize("name", FOLDERS)
def test_fast_path_reads_what_the_safe_vm_reads(dcp_folders: dict[str, Path], name: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = dcp_folders[name]
    monkeypatch.setenv("CKPTTOOL_SAFE_VM_ONLY", "1")
    slow = _summary(folder)
    monkeypatch.delenv("CKPTTOOL_SAFE_VM_ONLY")
    monkeypatch.setattr(dcp_fast, "_MIN_BYTES", 0)
    assert dcp_fast.fast_plain((folder / ".metadata").read_bytes()) is not None
    assert _summary(folder) == slow and slow


class _Payload:
    def __reduce__(self) -> tuple:
        import os

        return (os.system, ("touch ckpttool_marker_pwned",))


def test_a_payload_sends_the_file_back_to_the_safe_vm(dcp_folders: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(dcp_folders["shard0"], folder)
    with (folder / ".metadata").open("rb") as f:  # written by torch itself (the dcp_folders fixture)
        md = pickle.load(f)
    md.storage_meta = _Payload()
    (folder / ".metadata").write_bytes(pickle.dumps(md))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dcp_fast, "_MIN_BYTES", 0)
    assert dcp_fast.fast_plain((folder / ".metadata").read_bytes()) is None
    ckpt = ckpttool.open(folder)
    assert ckpt.dangerous
    assert not (tmp_path / "ckpttool_marker_pwned").exists()
