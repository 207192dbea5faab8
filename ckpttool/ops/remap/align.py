"""Align the modules of a source state_dict to a target's (``--like REF`` / ``--model``), with reasons.

Modules are compared by their *shape signature* (leaf tensor names and shapes). Decisions, in order:
same name and shapes; a signature only one source and one target module have; name similarity
when one pairing clearly beats the others; order, when as many sources as targets share a signature.
Anything else (two sources fit one target, ``conv1`` and ``conv_a`` both fit ``backbone.0``) is an
ambiguity: reported as a finding, never guessed; ``--map`` settles it.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import Finding
from ckpttool.ops.remap.rules import ModuleMap, Rule

__all__ = ["Target", "Alignment", "Coverage", "align", "coverage", "modules_of"]

Shape = tuple[int, ...]
Signature = tuple[tuple[str, Shape], ...]

_NO_DIGITS = re.compile(r"\d+")
_SIM_PAIRS = 250_000  # name similarity is tried on groups up to this many (source, target) pairs
_SIM_MIN = 0.5      # a name-similarity match needs at least this ratio...
_SIM_MARGIN = 0.15  # ...and to beat every other candidate, on both sides, by this much


@dataclass
class Target:
    """What the remapped state_dict should load into: keys and shapes in the target's order."""

    shapes: dict[str, Shape]
    parameters: list[str] | None = None
    source: str = "target"


@dataclass
class Alignment:
    """Module decisions (``matches`` src -> (tgt, reason)), the rules they make, and findings."""

    matches: dict[str, tuple[str, str]] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)
    ambiguous: list[tuple[list[str], list[str]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def rules(self, keys: Sequence[str]) -> list[Rule]:
        """One simultaneous, key-by-key map: matched modules moved, ambiguous and leftover ones dropped.

        Key-level entries keep a parent module's decision from spilling onto its children.
        """
        fate: dict[str, tuple[str | None, str]] = {s: (t, f"align: {why}") for s, (t, why) in self.matches.items()}
        for group, _ in self.ambiguous:
            fate.update({m: (None, "align: ambiguous (see findings)") for m in group})
        fate.update({m: (None, "align: no module of the target fits") for m in self.leftovers})
        entries: dict[str, tuple[str | None, str]] = {}
        for key in keys:
            module, _, leaf = key.rpartition(".")
            if module in fate:
                new, why = fate[module]
                entries[key] = (None if new is None else f"{new}.{leaf}" if new else leaf, why)
        return [ModuleMap(entries=entries, name="align")]


@dataclass
class Coverage:
    """How the remapped keys meet the target: what ``load_state_dict(strict=True)`` would say."""

    target: str
    matched: list[str]
    missing: list[str]
    unexpected: list[str]
    shape_mismatched: list[tuple[str, Shape, Shape]]

    @property
    def loads_strict(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatched)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "loads_strict": self.loads_strict,
                "counts": {"matched": len(self.matched), "missing": len(self.missing),
                           "unexpected": len(self.unexpected), "shape_mismatched": len(self.shape_mismatched)},
                "matched": self.matched, "missing": self.missing, "unexpected": self.unexpected,
                "shape_mismatched": [{"key": k, "shape": list(a), "target_shape": list(b)}
                                     for k, a, b in self.shape_mismatched]}


def modules_of(shapes: Mapping[str, Shape]) -> dict[str, Signature]:
    """Module path -> signature (its own tensors' leaf names and shapes), in first-seen order."""
    own: dict[str, list[tuple[str, Shape]]] = {}
    for key, shape in shapes.items():
        module, _, leaf = key.rpartition(".")
        own.setdefault(module, []).append((leaf, tuple(shape)))
    return {m: tuple(sorted(v)) for m, v in own.items()}


@functools.lru_cache(maxsize=65536)
def _ratio(x: str, y: str) -> float:
    return difflib.SequenceMatcher(None, x, y).ratio() if x and y else 0.0


def _similarity(a: str, b: str) -> float:
    """Mean of the full-path and last-component similarity of digit-free names (see ``_spelling``)."""
    return (_ratio(a, b) + _ratio(a.rpartition(".")[2], b.rpartition(".")[2])) / 2


def _spelling(name: str) -> str:
    """The name without digits: indices are for order to decide, not spelling. Repeated blocks then
    share spellings, so ``_ratio``'s cache makes a thousand-layer model cheap."""
    return _NO_DIGITS.sub("", name)


def _top2(values: list[tuple[float, int]]) -> tuple[float, int, float]:
    """(best score, its index, second-best score)."""
    best, idx, second = -1.0, -1, -1.0
    for score, i in values:
        if score > best:
            best, idx, second = score, i, best
        elif score > second:
            second = score
    return best, idx, second


def _by_name(srcs: list[str], tgts: list[str]) -> list[tuple[str, str, float]]:
    """Pairs that are each other's best name match, ahead of every rival on both sides by a margin.

    Skipped past ``_SIM_PAIRS`` pairs: huge groups are repeated blocks, which order pairs.
    """
    if len(srcs) * len(tgts) > _SIM_PAIRS or not srcs or not tgts:
        return []
    spelled_t = [_spelling(t) for t in tgts]
    scores = [[_similarity(a, b) for b in spelled_t] for a in map(_spelling, srcs)]
    by_src = [_top2([(row[j], j) for j in range(len(tgts))]) for row in scores]
    by_tgt = [_top2([(scores[i][j], i) for i in range(len(srcs))]) for j in range(len(tgts))]
    out = []
    for i, (best, j, second) in enumerate(by_src):
        _, t_i, t_second = by_tgt[j]
        if t_i == i and best >= _SIM_MIN and best - max(second, t_second) >= _SIM_MARGIN:
            out.append((srcs[i], tgts[j], best))
    return out


def _pair_group(srcs: list[str], tgts: list[str], sig: Signature, result: Alignment) -> None:
    if len(srcs) == len(tgts) == 1:
        result.matches[srcs[0]] = (tgts[0], "unique shape signature")
        return
    for s, t, sc in _by_name(srcs, tgts):
        result.matches[s] = (t, f"same shapes, name similarity {sc:.2f}")
        srcs.remove(s)
        tgts.remove(t)
    if srcs and len(srcs) == len(tgts):
        n = len(srcs)
        for i, (s, t) in enumerate(zip(srcs, tgts), 1):
            why = "same shapes, the one left after name matches" if n == 1 else f"same shapes, by order ({i} of {n})"
            result.matches[s] = (t, why)
        return
    if srcs and tgts:
        result.ambiguous.append((list(srcs), list(tgts)))
        shapes = ", ".join(f"{leaf}{list(shape)}" for leaf, shape in sig)
        result.findings.append(Finding(
            "remap.ambiguous", "warn",
            f"{_few(srcs)} all fit {_few(tgts)} (same shapes: {shapes}); none was moved",
            hint="settle it with --map, e.g. --map " + f"{srcs[0]}={tgts[0]}", where="model"))
        return
    result.leftovers += srcs
    result.missing += tgts


def align(source: Mapping[str, Shape], target: Target) -> Alignment:
    """Decide, module by module, where each source module goes in the target (see module docstring)."""
    src, tgt = modules_of(source), modules_of(target.shapes)
    result = Alignment()
    free_t = [t for t in tgt]
    rest_s: list[str] = []
    for s, sig in src.items():
        if tgt.get(s) == sig:
            result.matches[s] = (s, "same name and shapes")
            free_t.remove(s)
        else:
            rest_s.append(s)
    groups: dict[Signature, tuple[list[str], list[str]]] = {}
    for s in rest_s:
        groups.setdefault(src[s], ([], []))[0].append(s)
    for t in free_t:
        groups.setdefault(tgt[t], ([], []))[1].append(t)
    for sig, (srcs, tgts) in groups.items():
        _pair_group(srcs, tgts, sig, result)
    _leftover_findings(result)
    return result


def _leftover_findings(result: Alignment) -> None:
    if result.leftovers:
        result.findings.append(Finding(
            "remap.leftover", "warn",
            f"dropped {len(result.leftovers)} module(s) no module of the target fits: {_few(result.leftovers)}",
            hint="map them with --map OLD=NEW if the target has them under another shape", where="model"))
    if result.missing:
        result.findings.append(Finding(
            "remap.missing", "warn",
            f"{len(result.missing)} target module(s) got no weights: {_few(result.missing)}", where="model"))


def _few(names: Sequence[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def coverage(shapes: Mapping[str, Shape], target: Target) -> Coverage:
    """Compare remapped keys and shapes with the target's, key by key."""
    matched, mismatched, unexpected = [], [], []
    for key, shape in shapes.items():
        want = target.shapes.get(key)
        if want is None:
            unexpected.append(key)
        elif tuple(want) != tuple(shape):
            mismatched.append((key, tuple(shape), tuple(want)))
        else:
            matched.append(key)
    missing = [k for k in target.shapes if k not in shapes]
    return Coverage(target.source, matched, missing, unexpected, mismatched)
