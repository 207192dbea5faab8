"""Key alignment before comparing: strip prefixes, drop wrapper prefixes, map module paths, remap rules.

Prefix stripping and wrapper normalisation apply to both sides (so ``module.conv1.weight`` meets
``conv1.weight``); ``--map OLD=NEW`` (one simultaneous map, longest match wins, so ``a=b b=a``
swaps), then ``--rules FILE`` and ``--like REF`` (the remap engine's rules and alignment) rename A's
keys into B's names. Every rule works on whole dotted components: ``conv1`` matches ``conv1.weight``
and ``conv1`` but never ``conv10.weight``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import RemapConflict, UsageError
from ckpttool.model import Finding

__all__ = ["Alignment", "AlignedKeys", "parse_maps", "align_keys", "map_key", "normalize_key", "WRAPPER_PREFIXES"]

WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True, slots=True)
class Alignment:
    """How to rename keys before they are paired: applied in this order."""

    strip_prefixes: tuple[str, ...] = ()
    normalize: bool = False
    maps: tuple[tuple[str, str], ...] = ()
    rules: tuple[Any, ...] = ()  # ckpttool.ops.remap rules (--rules FILE), applied to A
    like: Any = None  # ckpttool.ops.remap Target (--like REF): align A's modules to it

    @property
    def is_identity(self) -> bool:
        return not (self.strip_prefixes or self.normalize or self.maps or self.rules or self.like is not None)


@dataclass(slots=True)
class AlignedKeys:
    """One side's keys after alignment: new name → original key, plus what rules dropped and said."""

    names: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def parse_maps(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["conv1=backbone.0"]`` → ``(("conv1", "backbone.0"),)``; raises ``UsageError`` on bad syntax."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        old, sep, new = spec.partition("=")
        old, new = old.strip().strip("."), new.strip().strip(".")
        if not sep or not old:
            raise UsageError(f"--map expects OLD=NEW module paths, got {spec!r}")
        if any(old == o for o, _ in out):
            raise UsageError(f"--map {old} given twice")
        out.append((old, new))
    return tuple(out)


def normalize_key(key: str) -> str:
    """Drop leading ``module.``/``_orig_mod.`` wrapper components, in any combination."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                key = key[len(prefix):]
                changed = True
    return key


def map_key(key: str, old: str, new: str) -> str:
    """``key`` with module path ``old`` replaced by ``new`` when ``old`` is a whole-component prefix."""
    if key == old:
        return new
    if key.startswith(old + "."):
        rest = key[len(old) + 1:]
        return f"{new}.{rest}" if new else rest
    return key


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    """Remove each module-path prefix (``model`` or ``model.``) that ``key`` starts with, whole components only."""
    for prefix in prefixes:
        head = prefix.rstrip(".") + "."
        if key.startswith(head) and len(key) > len(head):
            key = key[len(head):]
    return key


def rename(key: str, alignment: Alignment, *, side: str) -> str:
    """The name ``key`` of side ``a`` or ``b`` is compared under."""
    key = _strip(key, alignment.strip_prefixes)
    if alignment.normalize:
        key = normalize_key(key)
    if side == "a" and alignment.maps:
        hits = [(old, new) for old, new in alignment.maps if map_key(key, old, new) != key or key == old]
        if hits:
            old, new = max(hits, key=lambda m: len(m[0]))
            key = map_key(key, old, new)
    return key


def align_keys(keys: Sequence[str], alignment: Alignment, *, side: str,
               shapes: Mapping[str, tuple[int, ...]] | None = None) -> AlignedKeys:
    """One side's aligned names; two keys landing on one name raise ``RemapConflict``."""
    out = AlignedKeys()
    for key in keys:
        new = rename(key, alignment, side=side)
        if new in out.names:
            raise RemapConflict(f"alignment sends both {out.names[new]!r} and {key!r} of {side.upper()} to {new!r}",
                                hint="use a narrower --strip-prefix/--map")
        out.names[new] = key
    if side == "a" and (alignment.rules or alignment.like is not None):
        _remap_rules(out, alignment, shapes or {})
    return out


def _remap_rules(out: AlignedKeys, alignment: Alignment, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Run ``--rules`` then ``--like`` alignment (the remap engine) over names already aligned."""
    from ckpttool.ops.remap import align, plan

    original = dict(out.names)
    rules = list(alignment.rules)
    planned = plan(list(original), rules)
    planned.check()
    if alignment.like is not None:
        after = {r.dst: tuple(shapes.get(original[r.src], ())) for r in planned.mapping}
        result = align(after, alignment.like)
        rules += result.rules(list(after))
        out.findings += result.findings
        planned = plan(list(original), rules)
        planned.check()
    out.names = {r.dst: original[r.src] for r in planned.mapping}
    out.dropped = [original[k] for k, _ in planned.dropped]


