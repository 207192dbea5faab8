"""``plan(keys, rules) -> RemapPlan``: what a rule list would do to a key list, before anything is written.

Planning is separate from applying so that ``--dry-run`` shows exactly what a write would do, and so
collisions (two keys sent to one name) are found up front: they are errors, never last-wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import RemapConflict
from ckpttool.ops.remap.rules import LightningAttr, Rule, lightning_rule

__all__ = ["Rename", "RemapPlan", "plan"]


@dataclass(frozen=True)
class Rename:
    """One kept key: where it came from, where it goes, and why (``unchanged`` when no rule matched)."""

    src: str
    dst: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"from": self.src, "to": self.dst, "reason": self.reason}


@dataclass
class RemapPlan:
    """The outcome of applying rules to keys, in input order; no tensor is touched."""

    mapping: list[Rename] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    collisions: dict[str, list[str]] = field(default_factory=dict)
    unmatched_rules: list[str] = field(default_factory=list)

    @property
    def renamed(self) -> list[Rename]:
        return [r for r in self.mapping if r.src != r.dst]

    @property
    def unchanged(self) -> list[str]:
        return [r.src for r in self.mapping if r.src == r.dst]

    @property
    def forward(self) -> dict[str, str]:
        """Old key -> new key for every kept key."""
        return {r.src: r.dst for r in self.mapping}

    def check(self) -> None:
        """Raise ``RemapConflict`` when two keys would land on one name."""
        if self.collisions:
            dst, srcs = next(iter(self.collisions.items()))
            more = f" (and {len(self.collisions) - 1} more)" if len(self.collisions) > 1 else ""
            raise RemapConflict(f"{' and '.join(srcs)} would all become {dst}{more}",
                                hint="add a --map or a rule that tells them apart, or drop one")

    def to_dict(self) -> dict[str, Any]:
        return {"mapping": [r.to_dict() for r in self.mapping],
                "dropped": [k for k, _ in self.dropped],
                "dropped_reasons": {k: why for k, why in self.dropped},
                "collisions": [{"to": d, "from": s} for d, s in self.collisions.items()],
                "unmatched_rules": list(self.unmatched_rules)}


def plan(keys: Iterable[str], rules: Sequence[Rule]) -> RemapPlan:
    """Run ``rules`` in order over ``keys`` (each rule sees every key as the rules before left it)."""
    keys = list(keys)
    current: dict[str, str | None] = {k: k for k in keys}
    reasons: dict[str, list[str]] = {k: [] for k in keys}
    dropped: dict[str, str] = {}
    result = RemapPlan()
    for rule in rules:
        if isinstance(rule, LightningAttr):
            rule = lightning_rule([v for v in current.values() if v is not None])
        hit = False
        for src, key in current.items():
            if key is None:
                continue
            new, why = rule.apply(key)
            if why is None:
                continue
            hit = True
            if new is None:
                current[src] = None
                dropped[src] = why
            else:
                current[src] = new
                reasons[src].append(why)
        if not hit:
            result.unmatched_rules.append(rule.note or rule.label)
    seen: dict[str, list[str]] = {}
    for src in keys:
        dst = current[src]
        if dst is None:
            result.dropped.append((src, dropped[src]))
            continue
        seen.setdefault(dst, []).append(src)
        result.mapping.append(Rename(src, dst, "; ".join(reasons[src]) or "unchanged"))
    result.collisions = {dst: srcs for dst, srcs in seen.items() if len(srcs) > 1}
    return result
