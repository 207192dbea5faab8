"""The identical-bytes pass: windowed preadv and the chunks() fallback agree on every layout of a difference."""

from __future__ import annotations

import pytest
import torch

import ckpttool
from ckpttool.ops.diff.values import ByteComparer, same_bytes
from tests.diff.helpers import save


@pytest.mark.parametrize("where", [None, 0, 15, 16, 47, 63, 64, 99])
@pytest.mark.parametrize("fmt", [".pt", ".safetensors"])
def test_window_compare_matches_chunk_compare(tmp_path, where, fmt):
    x = torch.arange(100, dtype=torch.float32)
    y = x.clone()
    if where is not None:
        y[where] += 1
    a = ckpttool.open(save({"t": x}, tmp_path / f"a{fmt}")).state_dict()["t"]
    b = ckpttool.open(save({"t": y}, tmp_path / f"b{fmt}")).state_dict()["t"]
    comparer = ByteComparer(window=64)  # 16 elements per window: differences land in full windows and the tail
    seen: list[int] = []
    try:
        same, done = comparer.same(a, b, seen.append)
    finally:
        comparer.close()
    assert same == (where is None) == same_bytes(a, b, chunk=64)[0]
    if where is None:
        assert done == sum(seen) == 400
    else:
        assert done == (where * 4 // 64) * 64  # bytes confirmed equal before the differing window


def test_strided_views_fall_back_to_chunks(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = ckpttool.open(save({"t": base.t(), "u": base.t().contiguous()}, tmp_path / "a.pt")).state_dict()
    comparer = ByteComparer(window=8)
    try:
        assert comparer.same(sd["t"], sd["u"])[0]
    finally:
        comparer.close()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
def test_numeric_windows_match_chunks(tmp_path, dtype):
    from ckpttool.ops.diff.values import numeric_stats

    x = torch.randn(1000, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = (x.float() + 0.5).to(dtype)
    a = ckpttool.open(save({"t": x}, tmp_path / "a.pt")).state_dict()["t"]
    b = ckpttool.open(save({"t": y}, tmp_path / "b.safetensors")).state_dict()["t"]
    comparer = ByteComparer()
    try:
        windowed = numeric_stats(a, b, 1e-5, 1e-8, elements=64, comparer=comparer)
    finally:
        comparer.close()
    assert windowed == numeric_stats(a, b, 1e-5, 1e-8, elements=64)
