"""Align the modules of a source state_dict to a target's (``--like REF`` / ``--model``), with reasons.

Modules are compared by their *shape signature* (leaf tensor names and shapes). Decisions, in order:
same name and shapes; a signature only one source and one target module have; name similarity
when one pairing clearly beats the others; order, when as many sources as targets share a signature.
What is left (two sources fit one target: ``conv1`` and ``conv_a`` both fit ``backbone.0``) goes to
module order (see ``ordering``): the pairing that keeps the most decided modules in order wins, names
break its ties. Every such decision is reported as a ``remap.ambiguous`` finding; what order and
names cannot decide is not moved. ``--map`` overrides any of it.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckpttool.model import Finding
from ckpttool.ops.remap.ordering import Decision, by_order
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
    outvoted: dict[str, str] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def rules(self, keys: Sequence[str]) -> list[Rule]:
        """One simultaneous, key-by-key map: matched modules moved, ambiguous and leftover ones dropped.

        Key-level entries keep a parent module's decision from spilling onto its children.
        """
        fate: dict[str, tuple[str | None, str]] = {s: (t, f"align: {why}") for s, (t, why) in self.matches.items()}
        for group, _ in self.ambiguous:
            fate.update({m: (None, "align: ambiguous (see findings)") for m in group})
        fate.update({m: (None, "align: no module of the target fits") for m in self.leftovers})
        fate.update({m: (None, f"align: {why}") for m, why in self.outvoted.items()})
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


def _pair_group(srcs: list[str], tgts: list[str], result: Alignment) -> bool:
    """Decide a signature group by uniqueness, names and equal counts; False when order must decide."""
    if len(srcs) == len(tgts) == 1:
        result.matches[srcs[0]] = (tgts[0], "unique shape signature")
        return True
    for s, t, sc in _by_name(srcs, tgts):
        result.matches[s] = (t, f"same shapes, name similarity {sc:.2f}")
        srcs.remove(s)
        tgts.remove(t)
    if srcs and len(srcs) == len(tgts):
        n = len(srcs)
        for i, (s, t) in enumerate(zip(srcs, tgts), 1):
            why = "same shapes, the one left after name matches" if n == 1 else f"same shapes, by order ({i} of {n})"
            result.matches[s] = (t, why)
        return True
    if srcs and tgts:
        return False
    result.leftovers += srcs
    result.missing += tgts
    return True


def _order_groups(pending: list[tuple[Signature, list[str], list[str]]], src: dict[str, Signature],
                  tgt: dict[str, Signature], result: Alignment) -> None:
    """Groups with more sources than targets (or fewer): settled by module order, then names."""
    spos = {m: i for i, m in enumerate(src)}
    tpos = {m: i for i, m in enumerate(tgt)}
    anchors = [(spos[s], tpos[t]) for s, (t, _) in result.matches.items()]
    spelled = {m: _spelling(m) for _, srcs, tgts in pending for m in (*srcs, *tgts)}
    for sig, srcs, tgts in pending:
        decision = by_order(srcs, tgts, anchors, spos, tpos,
                            lambda a, b: _similarity(spelled[a], spelled[b]), _SIM_MARGIN)
        result.decisions.append(decision)
        for s, t in decision.chosen.items():
            others = [o for o in srcs if o != s]
            also = f"; {_few(others, 3)} also fit{'s' if len(others) == 1 else ''} {t}" if others else ""
            result.matches[s] = (t, decision.why[s] + also)
        went = ", ".join(f"{t} went to {s}" for s, t in decision.chosen.items())
        result.outvoted.update({s: decision.why[s] + (f"; {went}" if went else "") for s in decision.dropped})
        if decision.undecided:
            result.ambiguous.append((list(decision.undecided), list(decision.open_targets)))
        taken = set(decision.chosen.values()) | set(decision.open_targets)
        result.missing += [t for t in tgts if t not in taken]
        result.findings.append(_ambiguity_finding(decision, sig))


def _ambiguity_finding(d: Decision, sig: Signature) -> Finding:
    shapes = ", ".join(f"{leaf}{list(shape)}" for leaf, shape in sig)
    parts = [f"{_few(d.candidates)} all fit {_few(d.targets)} (same shapes: {shapes})"]
    parts += [f"chose {s} -> {t}: {d.why[s]}" for s, t in d.chosen.items()]
    if d.dropped:
        parts.append("dropped " + _few([f"{s} ({d.why[s]})" for s in d.dropped]))
    if d.undecided:
        parts.append(f"order and names cannot tell {_few(d.undecided)} apart; none of them was moved")
        hint = f"settle it with --map, e.g. --map {d.undecided[0]}={(d.open_targets or d.targets)[0]}"
    else:
        other = next((s for s in d.candidates if s not in d.chosen), d.candidates[0])
        hint = f"--map overrides it, e.g. --map {other}={d.targets[0]}; --strict makes it an error"
    return Finding("remap.ambiguous", "warn", "; ".join(parts), hint=hint, where="model")


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
    pending = [(sig, srcs, tgts) for sig, (srcs, tgts) in groups.items() if not _pair_group(srcs, tgts, result)]
    _order_groups(pending, src, tgt, result)
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
