r"""Rule files: TOML ``[[rule]]`` tables, one kind each, applied in file order.

    [[rule]]
    preset = "wrappers"                 # or "lightning", "lightning:net"
    [[rule]]
    strip_prefix = "backbone"           # add_prefix = "net"
    [[rule]]
    map = { conv1 = "backbone.0", conv2 = "backbone.3" }   # all at once: swaps do not chain
    [[rule]]
    regex = '^layer(\d+)\.'              # on the raw key, first match only
    replace = 'stage\1.'
    [[rule]]
    drop = ["conv_a"]                   # module paths; drop_regex = 'num_batches_tracked$'
    note = "unused in forward"          # optional: shown as the reason instead of the rule
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ckpttool.errors import UsageError
from ckpttool.ops.remap.rules import (
    AddPrefix,
    Drop,
    RegexRule,
    Rule,
    StripPrefix,
    compile_regex,
    module_map,
    module_path,
    preset,
)

__all__ = ["parse_rules", "load_rules", "read_toml"]


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as a dict; unreadable or invalid files are ``UsageError``s naming the file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {what}: {exc.strerror or exc}", path=path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} is not valid TOML: {exc}", path=path) from None


_KINDS = ("strip_prefix", "add_prefix", "map", "regex", "drop", "drop_regex", "preset")


def _one_rule(table: Any, where: str) -> list[Rule]:
    if not isinstance(table, dict):
        raise UsageError(f"{where}: each [[rule]] must be a table")
    kinds = [k for k in table if k in _KINDS]
    unknown = [k for k in table if k not in (*_KINDS, "replace", "note")]
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(_KINDS)}, replace, note)")
    if len(kinds) != 1:
        raise UsageError(f"{where}: a rule needs exactly one of {', '.join(_KINDS)}, found {kinds or 'none'}")
    kind, value = kinds[0], table[kinds[0]]
    note = table.get("note", "")
    if not isinstance(note, str):
        raise UsageError(f"{where}: note must be a string")
    if "replace" in table and kind != "regex":
        raise UsageError(f"{where}: 'replace' only goes with 'regex'")
    if kind == "strip_prefix":
        return [StripPrefix(note=note, prefix=module_path(value, where))]
    if kind == "add_prefix":
        return [AddPrefix(note=note, prefix=module_path(value, where))]
    if kind == "map":
        if not isinstance(value, dict) or not value:
            raise UsageError(f"{where}: map must be a non-empty table of old = \"new\" module paths")
        return [module_map({module_path(k, where): module_path(v, where, empty_ok=True)
                            for k, v in value.items()}, note=note)]
    if kind == "regex":
        replace = table.get("replace")
        if not isinstance(replace, str):
            raise UsageError(f"{where}: regex needs a 'replace' string")
        pattern = compile_regex(value, where)
        return [RegexRule(note=note, pattern=pattern, replace=replace)]
    if kind == "drop":
        paths = value if isinstance(value, list) else [value]
        return [Drop(note=note, module=module_path(p, where)) for p in paths]
    if kind == "drop_regex":
        return [Drop(note=note, regex=compile_regex(value, where))]
    return preset(value if isinstance(value, str) else "", None)


def parse_rules(data: Mapping[str, Any], where: str = "rules") -> list[Rule]:
    """Rules from a parsed TOML document: ``[[rule]]`` tables, applied in file order."""
    extra = [k for k in data if k != "rule"]
    if extra:
        raise UsageError(f"{where}: unknown top-level key(s) {', '.join(extra)}; write rules as [[rule]] tables")
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise UsageError(f"{where}: 'rule' must be an array of tables ([[rule]])")
    rules: list[Rule] = []
    for i, table in enumerate(tables, 1):
        rules += _one_rule(table, f"{where}: rule {i}")
    return rules


def load_rules(path: Path) -> list[Rule]:
    """Rules from a TOML file; a bad file is a ``UsageError`` naming it and what is wrong."""
    return parse_rules(read_toml(path, "rules file"), str(path))
