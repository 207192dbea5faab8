"""``BoxSource``: a tensor's C-order bytes from separately stored blocks, checked against numpy slicing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ckpttool.errors import UnreadableCheckpoint
from ckpttool.io.boxes import Box, BoxSource
from ckpttool.io.write.tensor_input import MemorySource


def _boxes(full: np.ndarray, cuts: list[list[int]]) -> list[Box]:
    """Blocks of ``full`` cut at ``cuts`` per dimension, each stored C-contiguous on its own."""
    import itertools

    out = []
    edges = [[0, *c, d] for c, d in zip(cuts, full.shape)]
    for cell in itertools.product(*[range(len(e) - 1) for e in edges]):
        lo = tuple(edges[i][k] for i, k in enumerate(cell))
        hi = tuple(edges[i][k + 1] for i, k in enumerate(cell))
        block = np.ascontiguousarray(full[tuple(slice(a, b) for a, b in zip(lo, hi))])
        src = MemorySource(memoryview(b"xx" + block.tobytes()))
        out.append(Box(lo, tuple(b - a for a, b in zip(lo, hi)), lambda s=src: (s, 2)))
    return out


CASES = [
    ((10,), [[4]]),
    ((7, 5), [[4], []]),
    ((7, 5), [[], [3]]),
    ((5, 7), [[3], [4]]),
    ((9, 2, 3), [[3, 5, 7], [], []]),
    ((3, 4, 6), [[], [1, 3], [2]]),
    ((4, 6, 5), [[2], [], [1, 4]]),
    ((), []),
    ((3, 0, 2), [[], [], []]),
]


@pytest.mark.parametrize(("shape", "cuts"), CASES)
def test_assembled_bytes_equal_the_whole_array(shape: tuple[int, ...], cuts: list[list[int]]) -> None:
    full = (np.arange(int(np.prod(shape)), dtype=np.int32) * 7 + 1).reshape(shape)
    src = BoxSource(Path("t"), shape, 4, list(reversed(_boxes(full, cuts))))
    want = full.tobytes()
    assert src.size == len(want)
    for chunk in (1, 5, 8, 12, 64, 1 << 20):
        assert b"".join(src.chunks(0, len(want), chunk)) == want
    for a, b in ((0, 0), (1, 3), (3, 17), (len(want) // 3, len(want) - 2)):
        if a <= b <= len(want):
            assert src.read(a, b - a) == want[a:b]


def test_a_gap_is_an_error_not_zeros() -> None:
    full = np.arange(12, dtype=np.int32).reshape(3, 4)
    boxes = _boxes(full, [[1], []])[:1]
    with pytest.raises(UnreadableCheckpoint, match="do not cover"):
        BoxSource(Path("t"), (3, 4), 4, boxes)


def test_overlapping_chunks_are_refused() -> None:
    full = np.arange(12, dtype=np.int32).reshape(3, 4)
    boxes = _boxes(full, [[1], []])
    boxes.append(boxes[0])
    with pytest.raises(UnreadableCheckpoint, match="overlap"):
        BoxSource(Path("t"), (3, 4), 4, boxes)


def test_boxes_are_opened_only_when_read() -> None:
    opened: list[int] = []
    full = np.arange(8, dtype=np.int32)
    src = MemorySource(memoryview(full.tobytes()))
    box = Box((0,), (8,), lambda: opened.append(1) or (src, 0))
    s = BoxSource(Path("t"), (8,), 4, [box])
    assert not opened
    assert s.read(4, 8) == full.tobytes()[4:12] and opened == [1]
