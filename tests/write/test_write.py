"""write_checkpoint: torch and safetensors output checked with torch as the oracle."""

from __future__ import annotations

import collections
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ckpttool
from ckpttool.errors import OutputRefused, UnsafeContent, UsageError, VerificationFailed
from ckpttool.io.write import checkpoint as write_mod
from ckpttool.io.write.atomic import HashingSink
from ckpttool.io.write.checkpoint import hashed_name, write_checkpoint
from ckpttool.model import Stub

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _training_dict() -> dict:
    w = torch.randn(6, 4)
    sd = collections.OrderedDict(weight=torch.nn.Parameter(w), row=w[2], t=w.t(),
                                 f8=torch.zeros(3, dtype=torch.float8_e4m3fn),
                                 u16=torch.arange(4).to(torch.uint16), bf=torch.randn(5).bfloat16(),
                                 nbt=torch.tensor(7))
    sd._metadata = collections.OrderedDict({"": {"version": 1}})
    return {"epoch": 3, "best": 0.5, "name": "run", "blob": b"\x00\xff", "big": 10**30,
            "model": sd, "optimizer": {"state": {0: {"momentum_buffer": torch.ones(6, 4)}},
                                       "param_groups": [{"lr": 0.1, "params": [0]}]},
            "history": [1.0, float("inf"), (1, 2, 3, 4)], "tags": {"a", "b"}, "none": None}


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
    assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)) if a.dtype.itemsize == 1 and a.numel() \
        else torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("mmap", [False, True])
def test_torch_output_loads_with_weights_only(tmp_path: Path, mmap: bool) -> None:
    tree = _training_dict()
    out = tmp_path / "train.pt"
    result = write_checkpoint(tree, out)
    assert result.format == "torch-zip" and result.tensors == 8 and result.nbytes == out.stat().st_size
    loaded = torch.load(out, weights_only=True, mmap=mmap)
    assert list(loaded) == list(tree)
    model = loaded["model"]
    assert isinstance(model, collections.OrderedDict) and model._metadata == {"": {"version": 1}}
    for key, value in tree["model"].items():
        _assert_same(model[key], value)
    assert isinstance(model["weight"], torch.nn.Parameter)
    ptr = model["weight"].untyped_storage().data_ptr()
    assert model["row"].untyped_storage().data_ptr() == ptr == model["t"].untyped_storage().data_ptr()
    assert loaded["history"][:2] == [1.0, float("inf")] and loaded["tags"] == {"a", "b"}
    assert loaded["blob"] == b"\x00\xff" and loaded["big"] == 10**30
    assert torch.equal(loaded["optimizer"]["state"][0]["momentum_buffer"], torch.ones(6, 4))


def test_torch_output_is_aligned_and_a_valid_zip(tmp_path: Path) -> None:
    out = tmp_path / "a.pt"
    write_checkpoint({"x": torch.randn(3), "y": torch.randn(17).half()}, out)
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert names[:4] == ["a/data.pkl", "a/.format_version", "a/.storage_alignment", "a/byteorder"]
        raw = out.read_bytes()
        for info in z.infolist():
            if info.filename.startswith("a/data/"):
                nlen, xlen = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
                    int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
                assert (info.header_offset + 30 + nlen + xlen) % 64 == 0


def test_same_tree_gives_same_bytes(tmp_path: Path) -> None:
    tree = {"x": torch.arange(10.0)}
    (tmp_path / "b").mkdir()
    a = write_checkpoint(tree, tmp_path / "a.pt")
    b = write_checkpoint(tree, tmp_path / "b" / "a.pt")
    assert a.sha256 == b.sha256 and a.path.read_bytes() == b.path.read_bytes()


def test_rewriting_a_fixture_reads_back_identically(tmp_path: Path) -> None:
    src = FIXTURES / "generic_train.pt"
    ckpt = ckpttool.open(src)
    out = tmp_path / "copy.pt"
    write_checkpoint(ckpt.tree, out, inputs=[src])
    a = torch.load(src, weights_only=True)
    b = torch.load(out, weights_only=True)
    assert list(a) == list(b)
    for key, value in a["model_state_dict"].items():
        _assert_same(b["model_state_dict"][key], value)
    assert b["optimizer_state_dict"]["param_groups"] == a["optimizer_state_dict"]["param_groups"]


def test_safetensors_output(tmp_path: Path) -> None:
    tensors = {"b": torch.randn(3, 4).t(), "a": torch.arange(5), "h": torch.randn(3).half(),
               "bf": torch.randn(2).bfloat16(), "f8": torch.zeros(2, dtype=torch.float8_e5m2)}
    out = tmp_path / "m.safetensors"
    result = write_checkpoint(tensors, out, metadata={"format": "pt", "epoch": "3"})
    assert result.format == "safetensors" and result.tensors == 5
    loaded = load_file(out)
    for key, value in tensors.items():
        assert torch.equal(loaded[key].view(torch.uint8), value.contiguous().view(torch.uint8)) \
            if value.dtype.itemsize == 1 else torch.equal(loaded[key], value)
    metadata = ckpttool.open(out).members["__metadata__"]
    assert {k: metadata[k] for k in ("format", "epoch")} == {"format": "pt", "epoch": "3"}
    # safetensors sorts its data; the caller's key order is recorded and given back by the reader
    assert json.loads(metadata["ckpttool.order"]) == list(tensors)
    assert list(ckpttool.open(out).state_dict()) == list(tensors)


def test_safetensors_stores_tied_tensors_once(tmp_path: Path) -> None:
    shared = torch.randn(4, 3)
    out = tmp_path / "tied.safetensors"
    result = write_checkpoint({"embed.weight": shared, "head.weight": shared}, out)
    assert result.tensors == 1 and list(load_file(out)) == ["embed.weight"]
    sd = ckpttool.open(out).state_dict()
    assert list(sd) == ["embed.weight", "head.weight"]
    assert sd["head.weight"].storage is sd["embed.weight"].storage


def test_safetensors_refuses_non_tensors_and_unsupported_dtypes(tmp_path: Path) -> None:
    with pytest.raises(OutputRefused, match="holds only tensors"):
        write_checkpoint({"a": torch.ones(1), "epoch": 3}, tmp_path / "m.safetensors")
    with pytest.raises(OutputRefused, match="no type for"):
        write_checkpoint({"a": torch.ones(2, dtype=torch.complex32)}, tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())


def test_refuses_existing_output_and_inputs(tmp_path: Path) -> None:
    out = tmp_path / "x.pt"
    out.write_bytes(b"keep")
    with pytest.raises(OutputRefused, match="exists"):
        write_checkpoint({"a": torch.ones(1)}, out)
    assert out.read_bytes() == b"keep"
    link = tmp_path / "link.pt"
    os.link(out, link)
    with pytest.raises(OutputRefused, match="one of the inputs"):
        write_checkpoint({"a": torch.ones(1)}, link, inputs=[out], force=True)
    with pytest.raises(OutputRefused, match="one of the inputs"):
        write_checkpoint({"a": torch.ones(1)}, tmp_path / "." / "x.pt", inputs=[out], force=True)
    assert out.read_bytes() == b"keep"
    write_checkpoint({"a": torch.ones(1)}, out, force=True)
    assert torch.equal(torch.load(out, weights_only=True)["a"], torch.ones(1))


def test_refuses_dangerous_stubs_and_unknown_extensions(tmp_path: Path) -> None:
    with pytest.raises(UnsafeContent, match=r"posix\.system"):
        write_checkpoint({"model": Stub("posix.system", ("true",), dangerous=True)}, tmp_path / "x.pt")
    with pytest.raises(UsageError):
        write_checkpoint({"a": torch.ones(1)}, tmp_path / "x.weights")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["x.pt", "x.safetensors"])
def test_exception_mid_write_leaves_target_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     name: str) -> None:
    out = tmp_path / name
    out.write_bytes(b"old")
    real = HashingSink.write

    def failing(self: HashingSink, data: bytes) -> None:
        if self.position > 0:
            raise RuntimeError("injected")
        real(self, data)

    monkeypatch.setattr(HashingSink, "write", failing)
    with pytest.raises(RuntimeError, match="injected"):
        write_checkpoint({"a": torch.randn(1000)}, out, force=True)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_failed_verification_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bad(*_: object) -> None:
        raise VerificationFailed("injected")

    monkeypatch.setattr(write_mod, "verify_written", bad)
    with pytest.raises(VerificationFailed):
        write_checkpoint({"a": torch.ones(3)}, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_hash_name(tmp_path: Path) -> None:
    result = write_checkpoint({"a": torch.ones(3)}, tmp_path / "model.pth", hash_name=True)
    assert result.path == hashed_name(tmp_path / "model.pth", result.sha256)
    assert result.path.name == f"model-{result.sha256[:8]}.pth" and result.path.exists()
    assert not (tmp_path / "model.pth").exists()


def test_corruption_on_the_way_to_disk_fails_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = HashingSink.write

    def flip(self: HashingSink, data: bytes) -> None:
        raw = bytes(data)
        if len(raw) == 4000:  # the tensor's bytes, not a header
            raw = b"\x01" + raw[1:]
        real(self, raw)

    monkeypatch.setattr(HashingSink, "write", flip)
    for name in ("x.pt", "x.safetensors"):
        with pytest.raises(VerificationFailed, match=r"different bytes|read back differently"):
            write_checkpoint({"a": torch.zeros(1000)}, tmp_path / name)
    assert not list(tmp_path.iterdir())


def test_shared_containers_and_cycles_survive(tmp_path: Path) -> None:
    shared = {"lr": 0.1}
    loop: list = [1]
    loop.append(loop)
    deep: dict = {"leaf": torch.ones(1)}
    for _ in range(150):
        deep = {"d": deep}
    out = tmp_path / "x.pt"
    write_checkpoint({"a": shared, "b": shared, "loop": loop, "deep": deep}, out)
    got = torch.load(out, weights_only=True)
    assert got["a"] is got["b"] and got["loop"][1] is got["loop"]
    node = got["deep"]
    for _ in range(150):
        node = node["d"]
    assert torch.equal(node["leaf"], torch.ones(1))


def test_zip64_records_load_in_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records past 4 GiB get zip64 fields; lowering the threshold checks that form on a small file."""
    from ckpttool.io.write.zip_writer import ZipStreamWriter

    monkeypatch.setattr(ZipStreamWriter, "ZIP64_AT", 100)
    tree = {"a": torch.randn(300), "b": torch.arange(7), "c": torch.randn(2, 3).t()}
    out = tmp_path / "z.pt"
    write_checkpoint(tree, out)
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
    for mmap in (False, True):
        got = torch.load(out, weights_only=True, mmap=mmap)
        assert all(torch.equal(got[k], v) and got[k].stride() == v.stride() for k, v in tree.items())


def test_a_state_dict_object_is_written_as_torch_writes_one(tmp_path: Path) -> None:
    src = FIXTURES / "bn_state_dict.pt"
    sd = ckpttool.open(src).state_dict()
    write_checkpoint(sd, tmp_path / "a.pt")
    write_checkpoint(sd, tmp_path / "a.safetensors")
    ref = torch.load(src, weights_only=True)
    got = torch.load(tmp_path / "a.pt", weights_only=True)
    assert list(got) == list(ref) and got._metadata == ref._metadata
    flat = load_file(tmp_path / "a.safetensors")
    assert all(torch.equal(got[k], ref[k]) and torch.equal(flat[k], ref[k]) for k in ref)
