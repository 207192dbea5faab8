"""Module order as evidence: which of several same-shaped modules goes where, or that none can tell.

When more source modules than target modules (or fewer) share a shape signature, the pairing is an
order-preserving one: a common subsequence of the group's sources and targets, each pair scored by
how many already-decided modules it keeps in order (``conv1`` before ``conv2`` as ``backbone.0``
before ``backbone.3``). The best subsequence is the longest, then the one keeping most modules in
order, then the one with the closest names. A module is decided only when every best subsequence
agrees on it (by order alone, or with names by a clear margin); the rest are left undecided.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision", "by_order"]

_MAX_CELLS = 250_000  # groups beyond this many (source, target) pairs are left undecided
_SIM_STEPS = 1000  # name similarity in thousandths, so that scores are exact integers


@dataclass
class Decision:
    """How one group of same-shaped modules was settled; ``why`` gives the reason per source."""

    candidates: list[str]
    targets: list[str]
    chosen: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)
    open_targets: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"candidates": self.candidates, "targets": self.targets,
                "chosen": [{"from": s, "to": t, "why": self.why[s]} for s, t in self.chosen.items()],
                "dropped": [{"module": s, "why": self.why[s]} for s in self.dropped],
                "undecided": self.undecided}


def _kept_in_order(srcs: Sequence[str], tgts: Sequence[str], anchors: Sequence[tuple[int, int]],
                   spos: Mapping[str, int], tpos: Mapping[str, int]) -> list[list[int]]:
    """For each (source, target): how many anchors (decided pairs) lie on the same side in both."""
    by_src = sorted(anchors)
    all_t = sorted(t for _, t in by_src)
    before: list[int] = []
    k, out = 0, []
    for s in sorted(srcs, key=spos.__getitem__):
        while k < len(by_src) and by_src[k][0] < spos[s]:
            bisect.insort(before, by_src[k][1])
            k += 1
        row = []
        for t in tgts:
            q = tpos[t]
            greater = len(all_t) - bisect.bisect_right(all_t, q)
            greater_before = len(before) - bisect.bisect_right(before, q)
            row.append(bisect.bisect_left(before, q) + greater - greater_before)
        out.append(row)
    order = {s: i for i, s in enumerate(sorted(srcs, key=spos.__getitem__))}
    return [out[order[s]] for s in srcs]


def _tables(w: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """Best common-subsequence scores of every prefix pair (f) and every suffix pair (b)."""
    n, m = len(w), len(w[0])
    f = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        row, up, wi = f[i], f[i - 1], w[i - 1]
        for j in range(1, m + 1):
            row[j] = max(up[j], row[j - 1], up[j - 1] + wi[j - 1])
    b = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, down, wi = b[i], b[i + 1], w[i]
        for j in range(m - 1, -1, -1):
            row[j] = max(down[j], row[j + 1], down[j + 1] + wi[j])
    return f, b


def by_order(srcs: Sequence[str], tgts: Sequence[str], anchors: Sequence[tuple[int, int]],
             spos: Mapping[str, int], tpos: Mapping[str, int], similarity: Callable[[str, str], float],
             margin: float) -> Decision:
    """Settle one group (sources and targets in module order) against the ``anchors`` (positions)."""
    d = Decision(list(srcs), list(tgts))
    n, m = len(srcs), len(tgts)
    if not n or not m or n * m > _MAX_CELLS:
        d.undecided, d.open_targets = list(srcs), list(tgts)
        d.why.update((s, "too many modules of one shape to align by order") for s in srcs)
        return d
    kept = _kept_in_order(srcs, tgts, anchors, spos, tpos)
    # one exact integer per pair, compared tier by tier: pairs, then modules kept in order, then names
    k_order = _SIM_STEPS * min(n, m) + 1
    k_pairs = k_order * (len(anchors) * min(n, m) + 1)
    sims = [[round(similarity(a, t) * _SIM_STEPS) for t in tgts] for a in srcs]
    w = [[k_pairs + kept[i][j] * k_order + sims[i][j] for j in range(m)] for i in range(n)]
    f, b = _tables(w)
    best = f[n][m] // k_order
    open_t: set[int] = set()
    for i, s in enumerate(srcs):
        fi, bi, wi = f[i], b[i + 1], w[i]
        options: list[tuple[int, int | None]] = [(fi[j] + wi[j] + bi[j + 1], j) for j in range(m)]
        options.append((max(fi[j] + bi[j] for j in range(m + 1)), None))
        top = sorted(((sc % k_order, j) for sc, j in options if sc // k_order == best), reverse=True,
                     key=lambda o: o[0])
        if len(top) == 1:
            _settle(d, s, top[0][1], tgts, "kept module order", "out of module order")
        elif top[0][0] - top[1][0] >= margin * _SIM_STEPS:
            j = top[0][1]
            score = f"{sims[i][j] / _SIM_STEPS:.2f}" if j is not None else ""
            _settle(d, s, j, tgts, f"kept module order, then the closest name ({score})",
                    "as good in module order, but other names are closer")
        else:
            d.undecided.append(s)
            d.why[s] = "order and names cannot decide"
            open_t.update(j for _, j in top if j is not None)
    d.open_targets = [t for j, t in enumerate(tgts) if j in open_t and t not in d.chosen.values()]
    return d


def _settle(d: Decision, src: str, j: int | None, tgts: Sequence[str], kept: str, dropped: str) -> None:
    if j is None:
        d.dropped.append(src)
        d.why[src] = dropped
    else:
        d.chosen[src] = tgts[j]
        d.why[src] = kept
