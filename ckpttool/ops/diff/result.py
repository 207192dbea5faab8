"""What ``diff`` finds: one entry per aligned key, meta changes, per-section and overall verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ckpttool.model import Finding
from ckpttool.numeric import DiffStats

__all__ = ["TensorDiff", "MetaChange", "SectionDiff", "DiffResult", "RuleOutcome", "GroupRow", "Status"]

Status = Literal["identical", "close", "changed", "shape", "only_a", "only_b", "not_compared"]
_ABSENT = "<absent>"


@dataclass(slots=True)
class TensorDiff:
    """One key after alignment: where it is, what kind of tensor, and how A and B compare.

    ``status``: ``identical`` (same bytes), ``close`` (different bytes, every element within
    rtol/atol), ``changed``, ``shape`` (shapes differ, values not compared), ``only_a``/``only_b``,
    ``not_compared`` (an entry ckpttool cannot compare: never counted as equal). ``entry_type`` is
    set for entries that are not plain tensors (``quantized``, ``dtensor``...), with the names of
    the inner tensors that differ and whether their state (scale, placements...) differs.
    ``key_a`` is A's own name when alignment renamed it.
    """

    key: str
    status: Status
    kind: str  # parameter | buffer | tensor (sections other than model/ema)
    dtype_a: str | None = None
    dtype_b: str | None = None
    shape_a: tuple[int, ...] | None = None
    shape_b: tuple[int, ...] | None = None
    stats: DiffStats | None = None
    key_a: str | None = None
    entry_type: str | None = None
    parts_changed: list[str] | None = None
    params_changed: bool = False
    note: str = ""

    @property
    def dtype_changed(self) -> bool:
        return self.dtype_a is not None and self.dtype_b is not None and self.dtype_a != self.dtype_b

    def metric(self, name: str) -> float | None:
        """``max_abs``, ``mean_abs``, ``rel_l2``, ``cosine``, ``mismatched`` or ``mismatched_fraction``."""
        if self.stats is None:
            return None
        if name == "mismatched_fraction":
            return self.stats.mismatched_fraction
        value = getattr(self.stats, name)
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "status": self.status, "kind": self.kind}
        if self.key_a is not None:
            out["key_a"] = self.key_a
        if self.dtype_a is not None:
            out["dtype_a"] = self.dtype_a
        if self.dtype_b is not None:
            out["dtype_b"] = self.dtype_b
        if self.shape_a is not None:
            out["shape_a"] = list(self.shape_a)
        if self.shape_b is not None:
            out["shape_b"] = list(self.shape_b)
        if self.stats is not None:
            out.update(self.stats.to_dict())
        if self.entry_type is not None:
            out["type"] = self.entry_type
            out["parts_changed"] = list(self.parts_changed or [])
            out["state_changed"] = self.params_changed
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class MetaChange:
    """A non-tensor value that differs: ``path`` is dotted within the section (``epoch``)."""

    path: str
    a: Any
    b: Any
    change: Literal["changed", "added", "removed"] = "changed"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "a": None if self.change == "added" else self.a,
                "b": None if self.change == "removed" else self.b, "change": self.change}

    def render(self, prefix: str = "") -> str:
        a = _ABSENT if self.change == "added" else repr(self.a)
        b = _ABSENT if self.change == "removed" else repr(self.b)
        return f"{prefix}{self.path}: {a} → {b}"


@dataclass(slots=True)
class SectionDiff:
    """The comparison of one section of A with the same section of B."""

    name: str
    source_a: str | None
    source_b: str | None
    entries: list[TensorDiff] = field(default_factory=list)
    meta_changed: list[MetaChange] = field(default_factory=list)
    renamed: int = 0
    kinds_known: bool = False
    missing: Literal["a", "b"] | None = None
    dropped: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def having(self, *statuses: str) -> list[TensorDiff]:
        return [e for e in self.entries if e.status in statuses]

    def tensors_equal(self, ignore_dtype: bool = False) -> bool:
        if any(e.status in ("changed", "shape", "only_a", "only_b", "not_compared") for e in self.entries):
            return False
        return ignore_dtype or not any(e.dtype_changed for e in self.entries)

    def equal(self, ignore_dtype: bool = False) -> bool:
        return self.missing is None and self.tensors_equal(ignore_dtype) and not self.meta_changed

    def verdict(self) -> str:
        """``parameters unchanged, 12 buffers changed`` and the like."""
        compared = [e for e in self.entries if e.status in ("identical", "close", "changed")]
        parts: list[str] = [f"missing in {self.missing.upper()}"] if self.missing else []
        if not self.entries and not self.meta_changed:
            return parts[0] if parts else "unchanged"
        kinds = ("parameter", "buffer") if any(e.kind != "tensor" for e in compared) else ("tensor",)
        for kind in kinds:
            of_kind = [e for e in compared if e.kind == kind]
            if not of_kind:
                continue
            changed = sum(e.status == "changed" for e in of_kind)
            close = sum(e.status == "close" for e in of_kind)
            noun = kind + ("s" if changed != 1 else "")
            if changed:
                parts.append(f"{changed} {noun} changed")
            elif close:
                parts.append(f"{kind}s equal within tolerance ({close} not bit-identical)")
            else:
                parts.append(f"{kind}s unchanged")
        for status, label in (("shape", "changed shape"), ("only_a", "only in A"), ("only_b", "only in B"),
                              ("not_compared", "not compared")):
            n = sum(e.status == status for e in self.entries)
            if n:
                parts.append(f"{n} {label}")
        dtypes = sum(e.dtype_changed for e in self.entries)
        if dtypes:
            parts.append(f"{dtypes} changed dtype")
        if self.meta_changed:
            parts.append(f"{len(self.meta_changed)} non-tensor values changed")
        return ", ".join(parts) or "unchanged"

    def to_dict(self) -> dict[str, Any]:
        e = self.entries
        return {
            "section": self.name, "source_a": self.source_a, "source_b": self.source_b,
            "missing": self.missing, "verdict": self.verdict(),
            "only_in_a": [x.key for x in e if x.status == "only_a"],
            "only_in_b": [x.key for x in e if x.status == "only_b"],
            "shape_changed": [{"key": x.key, "a": list(x.shape_a or ()), "b": list(x.shape_b or ())}
                              for x in e if x.status == "shape"],
            "dtype_changed": [{"key": x.key, "a": x.dtype_a, "b": x.dtype_b} for x in e if x.dtype_changed],
            "value_changed": [_value_dict(x) for x in e if x.status == "changed"],
            "within_tolerance": [_value_dict(x) for x in e if x.status == "close"],
            "identical": [x.key for x in e if x.status == "identical"],
            "not_compared": [{"key": x.key, "type": x.entry_type, "note": x.note} for x in e
                             if x.status == "not_compared"],
            "meta_changed": [m.to_dict() for m in self.meta_changed],
            "renamed": self.renamed,
            "dropped_by_rules": list(self.dropped),
            "findings": [f.to_dict() for f in self.findings],
            "kinds_known": self.kinds_known,
            "counts": _counts(e),
        }


def _value_dict(x: TensorDiff) -> dict[str, Any]:
    out: dict[str, Any] = {"key": x.key, "kind": x.kind}
    if x.key_a is not None:
        out["key_a"] = x.key_a
    if x.stats is not None:
        out.update(x.stats.to_dict())
    if x.entry_type is not None:
        out.update(type=x.entry_type, parts_changed=list(x.parts_changed or []), state_changed=x.params_changed)
        if x.note:
            out["note"] = x.note
    return out


def _counts(entries: list[TensorDiff]) -> dict[str, int]:
    counts = {s: 0 for s in ("identical", "close", "changed", "shape", "only_a", "only_b", "not_compared")}
    for e in entries:
        counts[e.status] += 1
    counts["dtype_changed"] = sum(e.dtype_changed for e in entries)
    counts["parameters_changed"] = sum(e.status == "changed" and e.kind == "parameter" for e in entries)
    counts["buffers_changed"] = sum(e.status == "changed" and e.kind == "buffer" for e in entries)
    return counts


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """A ``--fail-on`` rule and the keys that broke it."""

    rule: str
    failed_keys: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return bool(self.failed_keys)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "failed": self.failed, "keys": list(self.failed_keys)}


@dataclass(frozen=True, slots=True)
class GroupRow:
    """Entries rolled up by module prefix (``--group-by module``)."""

    group: str
    tensors: int
    counts: dict[str, int]
    max_abs: float | None
    min_cosine: float | None
    mismatched: int

    @property
    def changed(self) -> bool:
        return any(self.counts.get(s) for s in ("changed", "shape", "only_a", "only_b", "dtype_changed",
                                                "not_compared"))

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "tensors": self.tensors, **self.counts, "max_abs": self.max_abs,
                "min_cosine": self.min_cosine, "mismatched": self.mismatched}


@dataclass(slots=True)
class DiffResult:
    """Everything ``diff`` found, with the options that decide what counts as equal."""

    a: str
    b: str
    section: str
    sections: list[SectionDiff]
    rtol: float
    atol: float
    ignore_dtype: bool = False
    rules: list[RuleOutcome] = field(default_factory=list)
    groups: list[GroupRow] | None = None
    group_depth: int | None = None

    @property
    def equal(self) -> bool:
        return all(s.equal(self.ignore_dtype) for s in self.sections)

    @property
    def failed(self) -> bool:
        """What decides exit status 1: the ``--fail-on`` rules when given, else any difference."""
        if self.rules:
            return any(r.failed for r in self.rules)
        return not self.equal

    def to_dict(self) -> dict[str, Any]:
        qualify = self.section == "all"
        merged: dict[str, list[Any]] = {k: [] for k in (
            "only_in_a", "only_in_b", "shape_changed", "dtype_changed", "value_changed", "within_tolerance",
            "identical", "not_compared", "meta_changed")}
        for s in self.sections:
            part = s.to_dict()
            for name, items in merged.items():
                items.extend(_qualified(s.name, x, qualify) for x in part[name])
        out: dict[str, Any] = {"schema_version": 1, "equal": self.equal, "section": self.section,
                               "a": self.a, "b": self.b, **merged,
                               "verdict": "; ".join(f"{s.name}: {s.verdict()}" for s in self.sections),
                               "rtol": self.rtol, "atol": self.atol, "ignore_dtype": self.ignore_dtype,
                               "findings": [{**f.to_dict(), "section": s.name} for s in self.sections
                                            for f in s.findings],
                               "sections": {s.name: s.to_dict() for s in self.sections},
                               # every aligned key with its status, shapes and statistics (drawn as a module map)
                               "tensors": [_qualified(s.name, e.to_dict(), qualify) for s in self.sections
                                           for e in s.entries]}
        if self.rules:
            out["fail_on"] = [r.to_dict() for r in self.rules]
            out["failed"] = self.failed
        if self.groups is not None:
            out["group_depth"] = self.group_depth
            out["groups"] = [g.to_dict() for g in self.groups]
        return out


def _qualified(section: str, item: Any, qualify: bool) -> Any:
    """In ``--section all`` views, names carry their section: ``ema.conv1.weight``."""
    if not qualify:
        return item
    if isinstance(item, str):
        return f"{section}.{item}"
    field_name = "path" if "path" in item else "key"
    return {**item, field_name: f"{section}.{item[field_name]}"}
