"""Statistics against torch on random tensors of every dtype; diff(x, x) is always empty."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckpttool
from ckpttool.numeric import DiffAccumulator, fixed_chunks, to_float32, widen
from ckpttool.ops.diff import diff_checkpoints
from ckpttool.ops.diff.values import numeric_stats
from tests.diff.helpers import save, torch_stats

FLOATS = ["float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
          "float8_e5m2fnuz", "float8_e8m0fnu"]
OTHERS = ["int64", "int32", "int16", "int8", "uint8", "bool", "complex64", "complex128", "complex32"]
SAFETENSORS_OK = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int64", "int32",
                  "int16", "int8", "uint8", "bool"}


def _random(dtype: str, shape: tuple[int, ...], seed: int, nonfinite: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    if nonfinite and base.numel() > 2 and dtype in FLOATS[:4]:
        base.view(-1)[0] = float("nan")
        base.view(-1)[1] = float("inf")
    if dtype == "bool":
        return base > 0
    if dtype.startswith(("int", "uint")):
        return (base * 20).to(getattr(torch, dtype)) if dtype != "uint8" else (base.abs() * 20).to(torch.uint8)
    if dtype.startswith("complex"):
        return torch.complex(base, base.flip(-1) if base.dim() else base).to(getattr(torch, dtype))
    if dtype == "float8_e8m0fnu":
        return base.abs().clamp_min(1e-3).to(torch.float8_e8m0fnu)
    return base.to(getattr(torch, dtype))


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


@pytest.mark.parametrize("dtype", [d for d in FLOATS if d != "float64"])
def test_to_float32_is_exact(dtype):
    t = _random(dtype, (257,), 1, nonfinite=False)
    got = to_float32(_raw(t), dtype)
    want = t.to(torch.float32).numpy()
    assert np.array_equal(got, want, equal_nan=True)


def test_fixed_chunks_realigns_uneven_pieces():
    pieces = [b"abc", b"defgh", b"", b"ijklmnopq", b"r"]
    assert list(fixed_chunks(pieces, 4)) == [b"abcd", b"efgh", b"ijkl", b"mnop", b"qr"]
    assert list(fixed_chunks([b"abcd", b"efgh"], 4)) == [b"abcd", b"efgh"]


@settings(max_examples=30, deadline=None)
@given(dtype_a=st.sampled_from(FLOATS + OTHERS), same_dtype=st.booleans(), dtype_b=st.sampled_from(FLOATS[:4]),
       n=st.integers(0, 40), seeds=st.tuples(st.integers(0, 2**16), st.integers(0, 2**16)),
       nonfinite=st.booleans(), chunk=st.integers(1, 17))
def test_statistics_match_torch(dtype_a, same_dtype, dtype_b, n, seeds, nonfinite, chunk):
    dtype_b = dtype_a if same_dtype else dtype_b
    a = _random(dtype_a, (n,), seeds[0], nonfinite)
    b = _random(dtype_b, (n,), seeds[1], nonfinite) if not same_dtype or seeds[0] % 3 else a.clone()
    if same_dtype and seeds[1] % 2 and n:
        b = a.clone()
        b.view(-1)[n // 2] = _random(dtype_b, (1,), seeds[1], False)[0]
    acc = DiffAccumulator()
    raw_a, raw_b = widen(_raw(a), dtype_a), widen(_raw(b), dtype_b)
    for i in range(0, max(n, 1), chunk):  # any chunking gives the same figures
        acc.add(raw_a[i:i + chunk], raw_b[i:i + chunk])
    got = acc.result()
    ref = torch_stats(a, b)
    assert got.numel == n and got.mismatched == ref["mismatched"] and got.finite == ref["finite"]
    for metric in ("max_abs", "mean_abs", "rel_l2", "cosine"):
        want, have = ref.get(metric), getattr(got, metric)
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert have is None or metric == "cosine"
        else:
            assert have is not None and math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-12), metric


@pytest.mark.parametrize("dtype", FLOATS + OTHERS)
def test_chunked_tensor_statistics_match_one_shot(dtype, tmp_path):
    a, b = _random(dtype, (6, 7), 3, False), _random(dtype, (6, 7), 4, False)
    path = save({"a": a, "b": b, "t": a.t()}, tmp_path / "x.pt")
    sd = ckpttool.open(path).state_dict()
    small = numeric_stats(sd["a"], sd["b"], 1e-5, 1e-8, elements=5)
    big = numeric_stats(sd["a"], sd["b"], 1e-5, 1e-8)
    assert small.mismatched == big.mismatched and small.max_abs == big.max_abs
    assert small.mean_abs == pytest.approx(big.mean_abs, rel=1e-12, abs=1e-15)
    strided = numeric_stats(sd["t"], sd["b"].__class__(**{**_fields(sd["b"]), "shape": (7, 6), "stride": (6, 1)}),
                            1e-5, 1e-8)
    ref = torch_stats(a.t().contiguous(), b.reshape(7, 6))
    assert strided.mismatched == ref["mismatched"]


def _fields(t):
    return {f: getattr(t, f) for f in ("dtype", "shape", "stride", "storage", "storage_offset")}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtypes=st.lists(st.sampled_from([*sorted(SAFETENSORS_OK), "complex64", "float8_e8m0fnu"]), min_size=1,
                       max_size=5), seed=st.integers(0, 1000), n=st.integers(0, 30),
       fmt=st.sampled_from([".pt", ".safetensors"]))
def test_diff_of_a_checkpoint_with_its_copy_is_empty(tmp_path_factory, dtypes, seed, n, fmt):
    if fmt == ".safetensors":
        dtypes = [d for d in dtypes if d in SAFETENSORS_OK] or ["float32"]
    sd = {f"m{i}.{d}": _random(d, (n, 2), seed + i, nonfinite=True) for i, d in enumerate(dtypes)}
    folder = tmp_path_factory.mktemp("same")
    a, b = save(sd, folder / f"a{fmt}"), save(sd, folder / f"b{fmt}")
    result = diff_checkpoints(ckpttool.open(a), ckpttool.open(b))
    assert result.equal and not result.failed
    section = result.sections[0]
    assert [e.status for e in section.entries] == ["identical"] * len(sd)
    assert not section.meta_changed
