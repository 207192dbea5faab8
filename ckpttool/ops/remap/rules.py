"""Remap rules as data: strip/add a prefix, map module paths, regex renames, drops; TOML files; presets.

Rules act on *module paths*, component by component: ``conv1`` matches ``conv1.weight`` and
``conv1.0.bias`` but never ``conv10.weight``; stripping ``module`` never touches ``submodule.x``.
Only ``regex``/``drop_regex`` rules see the raw key string, because that is what the user asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ckpttool.errors import UsageError

__all__ = [
    "Rule", "StripPrefix", "AddPrefix", "ModuleMap", "RegexRule", "Drop", "StripWrappers",
    "parse_map", "preset", "PRESETS", "under", "split_path", "LightningAttr", "lightning_rule", "module_map",
    "compile_regex", "module_path",
]

PRESETS = ("wrappers", "lightning", "weight-norm")
WRAPPER_NAMES = ("module", "_orig_mod")


def split_path(path: str) -> tuple[str, ...]:
    """``"a.b.c"`` -> ``("a", "b", "c")``; the empty path has no components."""
    return tuple(path.split(".")) if path else ()


def under(key: str, module: str) -> str | None:
    """The rest of ``key`` below module path ``module`` (``""`` for the module itself), or None."""
    if not module:
        return key
    if key == module:
        return ""
    if key.startswith(module) and key[len(module)] == ".":
        return key[len(module) + 1:]
    return None


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}.{rest}" if prefix and rest else prefix or rest


@dataclass(frozen=True)
class Rule:
    """One step of a remap: ``apply(key)`` gives the new key (unchanged if not matched) or None to drop."""

    note: str = ""

    @property
    def label(self) -> str:
        raise NotImplementedError

    def apply(self, key: str) -> tuple[str | None, str | None]:
        """(new key or None when dropped, reason or None when the rule did not match)."""
        raise NotImplementedError


@dataclass(frozen=True)
class StripPrefix(Rule):
    prefix: str = ""

    @property
    def label(self) -> str:
        return f"strip-prefix {self.prefix}"

    def apply(self, key: str) -> tuple[str | None, str | None]:
        rest = under(key, self.prefix)
        if rest is None or not rest:
            return key, None
        return rest, self.note or self.label


@dataclass(frozen=True)
class AddPrefix(Rule):
    prefix: str = ""

    @property
    def label(self) -> str:
        return f"add-prefix {self.prefix}"

    def apply(self, key: str) -> tuple[str | None, str | None]:
        return _join(self.prefix, key), self.note or self.label


@dataclass(frozen=True)
class StripWrappers(Rule):
    """Leading wrapper modules (``module.``, ``_orig_mod.``) in any number, combination and order."""

    names: tuple[str, ...] = WRAPPER_NAMES

    @property
    def label(self) -> str:
        return "preset wrappers"

    def apply(self, key: str) -> tuple[str | None, str | None]:
        parts = key.split(".")
        n = 0
        while n < len(parts) - 1 and parts[n] in self.names:
            n += 1
        if n == 0:
            return key, None
        return ".".join(parts[n:]), self.note or f"{self.label} ({'.'.join(parts[:n])}.)"


@dataclass(frozen=True)
class ModuleMap(Rule):
    """Module paths renamed all at once (longest matching path wins), so swaps do not chain.

    ``entries`` maps old path -> (new path, reason); a new path of None drops the module.
    """

    entries: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    name: str = "map"

    @property
    def label(self) -> str:
        return self.name + " " + ", ".join(f"{k}={v[0]}" for k, v in list(self.entries.items())[:4]) + (
            " ..." if len(self.entries) > 4 else "")

    def match(self, key: str) -> str | None:
        """The longest old path ``key`` lies under, or None."""
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            path = ".".join(parts[:n])
            if path in self.entries:
                return path
        return None

    def apply(self, key: str) -> tuple[str | None, str | None]:
        old = self.match(key)
        if old is None:
            return key, None
        new, reason = self.entries[old]
        if new is None:
            return None, reason
        rest = under(key, old)
        return _join(new, rest or ""), reason


@dataclass(frozen=True)
class RegexRule(Rule):
    pattern: re.Pattern[str] = field(default_factory=lambda: re.compile(""))
    replace: str = ""

    @property
    def label(self) -> str:
        return f"regex {self.pattern.pattern} -> {self.replace}"

    def apply(self, key: str) -> tuple[str | None, str | None]:
        try:
            new, n = self.pattern.subn(self.replace, key, count=1)
        except (re.error, IndexError) as exc:
            raise UsageError(f"{self.label}: invalid replacement {self.replace!r}: {exc}") from None
        return (new, self.note or self.label) if n else (key, None)


@dataclass(frozen=True)
class Drop(Rule):
    """Drop a module path (component-wise) or, with ``regex``, every key the pattern finds."""

    module: str | None = None
    regex: re.Pattern[str] | None = None

    @property
    def label(self) -> str:
        return f"drop {self.module}" if self.module is not None else f"drop-regex {self.regex.pattern}"  # type: ignore[union-attr]

    def apply(self, key: str) -> tuple[str | None, str | None]:
        hit = under(key, self.module) is not None if self.module is not None else bool(self.regex.search(key))  # type: ignore[union-attr]
        return (None, self.note or self.label) if hit else (key, None)


def compile_regex(pattern: Any, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise UsageError(f"{where}: a regex must be a string, not {type(pattern).__name__}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"{where}: invalid regex {pattern!r}: {exc}") from None


def module_path(value: Any, where: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise UsageError(f"{where}: expected a module path string, got {value!r}")
    path = value.strip(".")
    if any(not part for part in split_path(path)):
        raise UsageError(f"{where}: {value!r} is not a module path (empty component)")
    return path


def module_map(pairs: Mapping[str, str | None], *, note: str = "", name: str = "map") -> ModuleMap:
    """A simultaneous module-path map; the reason of each entry is ``note`` or ``map OLD=NEW``."""
    return ModuleMap(note=note, name=name,
                     entries={old: (new, note or f"{name} {old}={new}") for old, new in pairs.items()})


def parse_map(items: Iterable[str]) -> ModuleMap | None:
    """``--map OLD=NEW`` options as one simultaneous map (so ``a=b b=a`` swaps)."""
    pairs: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep:
            raise UsageError(f"--map expects OLD=NEW, got {item!r}")
        old = module_path(old, "--map")
        if old in pairs:
            raise UsageError(f"--map {old} given twice")
        pairs[old] = module_path(new, "--map", empty_ok=True)
    return module_map(pairs) if pairs else None


def preset(name: str, keys: Iterable[str] | None) -> list[Rule]:
    """A built-in rule set: ``wrappers``, ``lightning[:ATTR]`` (ATTR detected from ``keys``) or
    ``weight-norm[:legacy]``."""
    base, _, arg = name.partition(":")
    if base == "wrappers" and not arg:
        return [StripWrappers()]
    if base == "lightning":
        if arg:
            return [StripPrefix(note=f"preset lightning ({arg}.)", prefix=module_path(arg, "--preset"))]
        if keys is None:
            return [LightningAttr()]
        return [lightning_rule(keys)]
    if base == "weight-norm":
        from ckpttool.ops.remap.weight_norm import weight_norm_preset

        return [weight_norm_preset(arg)]
    raise UsageError(f"unknown preset {name!r}; known: wrappers, lightning, lightning:ATTR, "
                     "weight-norm, weight-norm:legacy")


@dataclass(frozen=True)
class LightningAttr(Rule):
    """Placeholder for ``lightning`` whose attribute is detected once the keys are known."""

    @property
    def label(self) -> str:
        return "preset lightning"

    def apply(self, key: str) -> tuple[str | None, str | None]:
        raise AssertionError("plan() resolves LightningAttr against the keys it sees")


def lightning_rule(keys: Iterable[str]) -> Rule:
    """Strip the LightningModule attribute all keys share (``model``), detected from ``keys``."""
    firsts: list[str] = []
    for key in keys:
        head, dot, _ = key.partition(".")
        if dot and head not in firsts:
            firsts.append(head)
    if len(firsts) == 1:
        attr = firsts[0]
    elif "model" in firsts:
        attr = "model"
    else:
        raise UsageError("cannot detect the LightningModule attribute holding the model "
                         f"(top-level modules: {', '.join(firsts[:6]) or 'none'})",
                         hint="name it: --preset lightning:ATTR")
    return StripPrefix(note=f"preset lightning ({attr}.)", prefix=attr)
