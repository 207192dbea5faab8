"""Every dtype torch 2.13 saves, and views: exact sizes, safetensors codes both ways, refusals, stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ckpttool.dtypes import DTYPES, by_name, by_safetensors
from tests.conftest import FIXTURES, run_cli

ZOO = FIXTURES / "dtypes_zoo.pt"
_NO_SAFETENSORS_CODE = ("complex128", "complex32")


@pytest.mark.parametrize("d", DTYPES, ids=lambda d: d.name)
def test_itemsize_matches_torch(d) -> None:
    assert getattr(torch, d.name).itemsize == d.itemsize


def test_safetensors_codes_are_the_ones_the_installed_safetensors_knows() -> None:
    import safetensors.torch as st

    known = {code for code, _ in st._TYPES.items()} | {"F8_E8M0"}  # written by safetensors, read by safe_open
    for d in DTYPES:
        if d.safetensors is not None:
            assert d.safetensors in known, d.name
            assert by_safetensors(d.safetensors) is d
    for code, dtype in st._TYPES.items():
        assert by_safetensors(code) is by_name(str(dtype)), code


def test_complex128_and_complex32_are_refused_by_name(tmp_path: Path) -> None:
    out = tmp_path / "zoo.safetensors"
    proc = run_cli("convert", ZOO, "-o", out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert all(name in proc.stderr for name in _NO_SAFETENSORS_CODE)
    assert not out.exists()


def test_every_other_dtype_and_view_round_trips_through_safetensors(tmp_path: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "zoo.safetensors"
    proc = run_cli("convert", ZOO, "-o", out, *(a for n in _NO_SAFETENSORS_CODE for a in ("--drop", n)), "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["excluded"]) == sorted(_NO_SAFETENSORS_CODE)
    theirs = torch.load(ZOO, weights_only=True)
    with safe_open(str(out), "pt") as f:
        keys = set(f.keys())
        written = {k: f.get_tensor(k) for k in f.keys()}
    for key, t in theirs.items():
        if key in _NO_SAFETENSORS_CODE:
            assert key not in keys
            continue
        if key not in written:  # a view stored inside the tensor it views: read back by ckpttool
            continue
        w = written[key]
        assert w.dtype == t.dtype and w.shape == t.shape, key
        assert torch.equal(w.reshape(-1).view(torch.uint8), t.contiguous().reshape(-1).view(torch.uint8)), key
    import ckpttool

    back = ckpttool.open(out).state_dict()
    for key, t in theirs.items():
        if key in _NO_SAFETENSORS_CODE:
            continue
        ref = back[key]
        assert (ref.dtype, ref.shape) == (str(t.dtype).removeprefix("torch."), tuple(t.shape)), key
        assert ref.read_bytes() == t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes(), key


def test_views_read_exactly_as_torch_reads_them() -> None:
    import ckpttool

    theirs = torch.load(ZOO, weights_only=True)
    sd = ckpttool.open(ZOO).state_dict()
    for key in ("shared_base", "shared_slice", "transposed", "scalar0d", "empty"):
        t, ref = theirs[key], sd[key]
        assert ref.shape == tuple(t.shape) and ref.stride == t.stride() and ref.storage_offset == t.storage_offset()
        assert ref.read_bytes() == t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    assert sd["shared_base"].storage is sd["shared_slice"].storage
    assert sd["shared_slice"].nbytes < sd["shared_slice"].storage.nbytes  # smaller than its storage


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                                  "float8_e8m0fnu", "bfloat16", "uint16", "uint32", "uint64"])
def test_inspect_stats_on_wide_and_narrow_types(name: str) -> None:
    proc = run_cli("inspect", ZOO, "--stats", "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)["sections"]["model"]["tensors"][name]["stats"]
    t = torch.load(ZOO, weights_only=True)[name].double()
    assert stats["min"] == pytest.approx(float(t.min()))
    assert stats["max"] == pytest.approx(float(t.max()))
    assert stats["mean"] == pytest.approx(float(t.mean()))
