"""DTensor, torchao, unknown subclasses, sparse and nested tensors: listed, compared, refused by writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import FIXTURES, run_cli
from tests.tensors.torch_walk import fixture_classes, signature

DTENSOR = FIXTURES / "dtensor_fsdp2.pt"
SPARSE = FIXTURES / "sparse_nested.pt"
SUBCLASSES = FIXTURES / "tensor_subclasses.pt"
TORCHAO = FIXTURES / "torchao_weights.pt"


def _json(*args: object, code: int = 0) -> dict:
    proc = run_cli(*map(str, args), "--json")
    assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout)


def _part_matches(part: dict, t: torch.Tensor) -> None:
    dtype, shape, _ = signature(t)
    assert (part["dtype"], tuple(part["shape"])) == (dtype, shape)


def test_dtensor_shows_placements_mesh_and_local_shard() -> None:
    from torch.distributed.tensor import Replicate, Shard

    theirs = torch.load(DTENSOR, weights_only=False)
    report = _json("inspect", DTENSOR)
    tensors = report["sections"]["model"]["tensors"]
    assert list(tensors) == list(theirs)
    for key, t in theirs.items():
        entry = tensors[key]
        assert entry["type"] == "dtensor" and entry["shape"] == list(t.shape)
        assert entry["params"]["mesh_shape"] == list(t.device_mesh.shape)
        placements = [f"Shard(dim={p.dim})" if isinstance(p, Shard) else "Replicate()" for p in t.placements]
        assert all(isinstance(p, Shard | Replicate) for p in t.placements)
        assert entry["params"]["placements"] == placements
        _part_matches(entry["parts"]["local_shard"], t._local_tensor)
        assert "one rank" in entry["note"]
    assert any(f["code"] == "tensor.dtensor-shard" for f in report["findings"])


def test_scan_calls_torch_and_torchao_tensor_classes_data() -> None:
    for path in (DTENSOR, SPARSE, TORCHAO, FIXTURES / "quantized.pt", FIXTURES / "quantized_modules.pt"):
        report = _json("scan", path)
        kinds = {g["name"]: g["kind"] for f in report["files"] for g in f["globals"]}
        assert set(kinds.values()) == {"data"}, (path.name, kinds)
    names = {g["name"] for f in _json("scan", DTENSOR)["files"] for g in f["globals"]}
    assert "torch.distributed.tensor.DTensor" in names


def test_torchao_weights_match_what_torchao_reported() -> None:
    expected = json.loads((FIXTURES / "torchao_weights.expected.json").read_text())
    import ckpttool

    sd = ckpttool.open(TORCHAO).state_dict()
    assert sorted([*sd.tensors, *sd.composites]) == sorted(expected)
    for key, want in expected.items():
        if "parts" not in want:
            ref = sd.tensors[key]
            assert (ref.dtype, list(ref.shape), ref.digest()) == (want["dtype"], want["shape"], want["sha256"])
            continue
        entry = sd.composites[key]
        assert entry.kind == "torchao" and entry.params["class"] == want["class"]
        assert (entry.dtype, list(entry.shape or ())) == (want["dtype"], want["shape"])
        for name, part in want["parts"].items():
            ref = entry.parts[name]
            assert (ref.dtype, list(ref.shape), ref.digest()) == (part["dtype"], part["shape"], part["sha256"])


def test_unknown_subclasses_are_listed_with_their_inner_tensors() -> None:
    with fixture_classes():
        theirs = torch.load(SUBCLASSES, weights_only=False)
    report = _json("inspect", SUBCLASSES)
    tensors = report["sections"]["model"]["tensors"]
    assert list(tensors) == list(theirs)
    packed = tensors["packed"]
    assert packed["type"] == "subclass" and packed["decoded"] is False
    assert packed["params"]["class"] == "mylib.tensors.PackedWeight" and packed["shape"] == [3, 4]
    _part_matches(packed["parts"]["packed"], theirs["packed"].packed)
    _part_matches(packed["parts"]["scale"], theirs["packed"].scale)
    _part_matches(tensors["tagged"]["parts"]["data"], theirs["tagged"].as_subclass(torch.Tensor))
    undecoded = {f["where"] for f in report["findings"] if f["code"] == "tensor.not-decoded"}
    assert undecoded == {"tagged", "packed"}


def test_sparse_and_nested_components_are_shown() -> None:
    theirs = torch.load(SPARSE, weights_only=False)
    tensors = _json("inspect", SPARSE)["sections"]["model"]["tensors"]
    assert list(tensors) == list(theirs)
    coo = theirs["coo"]
    _part_matches(tensors["coo"]["parts"]["indices"], coo._indices())
    _part_matches(tensors["coo"]["parts"]["values"], coo._values())
    for key, compressed, plain in (("csr", "crow_indices", "col_indices"), ("bsr", "crow_indices", "col_indices"),
                                   ("csc", "ccol_indices", "row_indices"), ("bsc", "ccol_indices", "row_indices")):
        t = theirs[key]
        assert tensors[key]["type"] == f"sparse_{key}" and tensors[key]["shape"] == list(t.shape)
        _part_matches(tensors[key]["parts"][compressed], getattr(t, compressed)())
        _part_matches(tensors[key]["parts"][plain], getattr(t, plain)())
        _part_matches(tensors[key]["parts"]["values"], t.values())
    assert tensors["nested"]["type"] == "nested" and tensors["nested"]["params"]["components"] == 2
    _part_matches(tensors["nested_jagged"]["parts"]["values"], theirs["nested_jagged"].values())
    _part_matches(tensors["nested_jagged"]["parts"]["offsets"], theirs["nested_jagged"].offsets())


def test_diff_compares_sparse_values(tmp_path: Path) -> None:
    sd = torch.load(SPARSE, weights_only=False)
    coo = sd["coo"]
    sd["coo"] = torch.sparse_coo_tensor(coo._indices(), coo._values() * 2, coo.shape).coalesce()
    edited = tmp_path / "edited.pt"
    torch.save(sd, edited)
    report = _json("diff", SPARSE, edited, code=1)
    changed = {e["key"]: e for e in report["value_changed"]}
    assert list(changed) == ["coo"] and changed["coo"]["parts_changed"] == ["values"]
    assert changed["coo"]["max_abs"] == pytest.approx(float(coo._values().abs().max()))
    assert _json("diff", SPARSE, SPARSE)["equal"] is True


def test_unknown_subclass_without_parts_is_never_called_equal(tmp_path: Path) -> None:
    import ckpttool
    from ckpttool.model import CompositeTensor
    from ckpttool.ops.diff import DiffOptions, diff_checkpoints

    a, b = ckpttool.open(SUBCLASSES), ckpttool.open(SUBCLASSES)
    for ckpt in (a, b):
        sd = ckpt.state_dict()
        sd.composites["opaque"] = CompositeTensor("unknown", "torch._utils._rebuild_xla_tensor", "unknown", None)
    result = diff_checkpoints(a, b, DiffOptions())
    entry = next(e for s in result.sections for e in s.entries if e.key == "opaque")
    assert entry.status == "not_compared" and not result.equal


@pytest.mark.parametrize("path", [DTENSOR, SPARSE, SUBCLASSES, TORCHAO])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_writers_refuse_what_they_cannot_hold(tmp_path: Path, path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    proc = run_cli("convert", path, "-o", out)
    assert proc.returncode == 2 and proc.stderr.startswith("ckpttool: error[") and "--drop" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())


def test_drop_by_regex_keeps_the_plain_tensors(tmp_path: Path) -> None:
    out = tmp_path / "dense.pt"
    proc = run_cli("convert", SPARSE, "-o", out, "--section", "model", "--drop", "re:^(coo|cs.|bs.|nested.*)$")
    assert proc.returncode == 0, proc.stderr
    written = torch.load(out, weights_only=True)
    assert list(written) == ["dense"]
    assert torch.equal(written["dense"], torch.load(SPARSE, weights_only=False)["dense"])


class _DeviceLike(torch.Tensor):
    """Pickles itself the way torch pickles tensors of devices without storage (numpy + a rebuild function)."""

    def __reduce_ex__(self, proto: int) -> tuple:
        return (torch._utils._rebuild_device_tensor_from_numpy,
                (self.detach().as_subclass(torch.Tensor).numpy(), torch.float32, "cpu", False))


def test_a_rebuild_function_ckpttool_does_not_decode_is_listed_and_not_compared(tmp_path: Path) -> None:
    path = tmp_path / "device.pt"
    torch.save({"w": torch.ones(2), "xla": torch.arange(6.0).reshape(2, 3).as_subclass(_DeviceLike)}, path)
    assert set(torch.load(path, weights_only=False)) == {"w", "xla"}
    report = _json("inspect", path)
    entry = report["sections"]["model"]["tensors"]["xla"]
    assert entry["type"] == "unknown" and entry["decoded"] is False
    assert [f["where"] for f in report["findings"] if f["code"] == "tensor.not-decoded"] == ["xla"]
    diff = _json("diff", path, path, code=1)
    assert diff["equal"] is False and [e["key"] for e in diff["not_compared"]] == ["xla"]
    assert run_cli("convert", path, "-o", tmp_path / "out.safetensors").returncode == 2
