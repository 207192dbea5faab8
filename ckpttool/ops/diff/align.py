"""Key alignment before comparing: strip prefixes, drop wrapper prefixes, map module paths.

Prefix stripping and wrapper normalisation apply to both sides (so ``module.conv1.weight`` meets
``conv1.weight``); ``--map OLD=NEW`` renames A's module paths into B's names. Every rule works on
whole dotted components: ``conv1`` matches ``conv1.weight`` and ``conv1`` but never ``conv10.weight``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ckpttool.errors import RemapConflict, UsageError

__all__ = ["Alignment", "parse_maps", "align_keys", "map_key", "normalize_key", "WRAPPER_PREFIXES"]

WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True, slots=True)
class Alignment:
    """How to rename keys before they are paired: applied in this order."""

    strip_prefixes: tuple[str, ...] = ()
    normalize: bool = False
    maps: tuple[tuple[str, str], ...] = ()

    @property
    def is_identity(self) -> bool:
        return not (self.strip_prefixes or self.normalize or self.maps)


def parse_maps(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["conv1=backbone.0"]`` → ``(("conv1", "backbone.0"),)``; raises ``UsageError`` on bad syntax."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        old, sep, new = spec.partition("=")
        old, new = old.strip().strip("."), new.strip().strip(".")
        if not sep or not old:
            raise UsageError(f"--map expects OLD=NEW module paths, got {spec!r}")
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
    for prefix in prefixes:
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix):]
    return key


def rename(key: str, alignment: Alignment, *, side: str) -> str:
    """The name ``key`` of side ``a`` or ``b`` is compared under."""
    key = _strip(key, alignment.strip_prefixes)
    if alignment.normalize:
        key = normalize_key(key)
    if side == "a":
        for old, new in alignment.maps:
            key = map_key(key, old, new)
    return key


def align_keys(keys: Sequence[str], alignment: Alignment, *, side: str) -> dict[str, str]:
    """new name → original key for one side; two keys landing on one name raise ``RemapConflict``."""
    out: dict[str, str] = {}
    for key in keys:
        new = rename(key, alignment, side=side)
        if new in out:
            raise RemapConflict(f"alignment sends both {out[new]!r} and {key!r} of {side.upper()} to {new!r}",
                                hint="use a narrower --strip-prefix/--map")
        out[new] = key
    return out


def renamed_count(mapping: Mapping[str, str]) -> int:
    return sum(new != old for new, old in mapping.items())
