"""``inspect``: what a checkpoint holds, from metadata alone (tensor bytes only with ``stats``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import SectionNotFound
from ckpttool.io.tensor_findings import composite_entries
from ckpttool.model import SECTION_KINDS, Checkpoint, Finding, GlobalUse, StateDict, TensorRef
from ckpttool.ops.entries import describe
from ckpttool.ops.summaries import optimizer_summary, scaler_summary, scheduler_summary
from ckpttool.tree import walk

__all__ = ["InspectReport", "SectionReport", "inspect_checkpoint", "all_tensors"]


@dataclass
class SectionReport:
    """One section as a report shows it: tensors for model/ema, a summary for the others."""

    kind: str
    source: str
    tensors: StateDict | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] | None = None  # the section's own key order, where composites sit among tensors

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.tensors is not None:
            out["tensors"] = {}
            for key, t in self.tensors.items():
                entry: dict[str, Any] = {"shape": list(t.shape), "dtype": t.dtype, "nbytes": t.nbytes}
                kind = self.tensors.kind_of(key)
                if kind:
                    entry["kind"] = kind
                if key in self.stats:
                    entry["stats"] = self.stats[key]
                out["tensors"][key] = entry
            for key, entry in self.tensors.composites.items():
                desc = describe(entry)
                kind = self.tensors.kind_of(key)
                if kind:
                    desc["kind"] = kind
                out["tensors"][key] = desc
            if self.tensors.composites and self.order:
                rank = {k: i for i, k in enumerate(self.order)}
                out["tensors"] = dict(sorted(out["tensors"].items(), key=lambda kv: rank.get(kv[0], len(rank))))
            out["numel"] = self.tensors.numel
            out["nbytes"] = self.tensors.nbytes
        out.update(self.summary)
        return out


@dataclass
class InspectReport:
    """Everything ``ckpttool inspect`` shows."""

    path: Path
    format: str
    layout: str
    file_size: int
    sections: dict[str, SectionReport]
    meta: dict[str, Any]
    globals: list[GlobalUse]
    findings: list[Finding]
    tensor_count: int
    parameter_count: int
    bytes_by_dtype: dict[str, int]
    locations: list[str]
    dcp: dict[str, Any] | None = None  # a DCP folder's placement across ranks (``dcp_layout``)

    def to_dict(self) -> dict[str, Any]:
        sections = {k: s.to_dict() for k, s in self.sections.items() if k != "meta"}
        out = {"schema_version": 1, "path": str(self.path), "format": self.format,
               "layout": self.layout, "file_size": self.file_size,
               "totals": {"tensors": self.tensor_count, "parameters": self.parameter_count,
                          "bytes_by_dtype": self.bytes_by_dtype, "locations": self.locations},
               "sections": sections, "meta": self.meta,
               "globals": [g.to_dict() for g in self.globals],
               "findings": [f.to_dict() for f in self.findings]}
        if self.dcp is not None:
            out["dcp"] = self.dcp
        return out


def all_tensors(tree: Any) -> list[tuple[str, TensorRef]]:
    """Every distinct tensor anywhere in the tree, with the first path that reaches it."""
    return [(path, obj) for path, obj in walk(tree) if isinstance(obj, TensorRef)]


def _section_report(ckpt: Checkpoint, kind: str) -> SectionReport:
    section = ckpt.sections[kind]
    report = SectionReport(kind=kind, source=section.source, tensors=section.state_dict)
    if section.state_dict is not None and section.state_dict.composites and isinstance(section.value, dict):
        report.order = [str(k) for k in section.value]
    if kind == "optimizer":
        report.summary = optimizer_summary(section.value)
    elif kind == "scheduler":
        report.summary = scheduler_summary(section.value)
    elif kind == "scaler":
        report.summary = scaler_summary(section.value)
    return report


def inspect_checkpoint(ckpt: Checkpoint, *, sections: tuple[str, ...] = (), stats: bool = False
                       ) -> InspectReport:
    """Summarise ``ckpt``; with ``stats`` read each tensor of the shown sections (streamed)."""
    unknown = [s for s in sections if s not in ckpt.sections and s not in SECTION_KINDS]
    if unknown:
        raise SectionNotFound(f"no {unknown[0]} section in this checkpoint "
                              f"(sections: {', '.join(ckpt.sections) or 'none'})", path=ckpt.path)
    kinds = [k for k in ckpt.sections if not sections or k in sections]
    reports = {k: _section_report(ckpt, k) for k in kinds}
    if not any(r.tensors is not None for r in reports.values()) and not sections:
        found = all_tensors(ckpt.tree)
        others = composite_entries(ckpt.tree)
        if found or others:
            reports["tensors"] = SectionReport("tensors", "<anywhere in the file>",
                                               StateDict(tensors=dict(found), composites=dict(others)))
    if stats:
        from ckpttool.ops.tensor_stats import tensor_stats

        for report in reports.values():
            if report.tensors is not None:
                report.stats = {k: tensor_stats(t) for k, t in report.tensors.items()}
    everything = [t for _, t in all_tensors(ckpt.tree)]
    composites = [e for _, e in composite_entries(ckpt.tree)]
    by_dtype: Counter[str] = Counter()
    for t in everything + [p for e in composites for p in e.parts.values()]:
        by_dtype[t.dtype] += t.nbytes
    model = ckpt.sections.get("model") or ckpt.sections.get("ema")
    params = model.state_dict.numel if model is not None and model.state_dict is not None else \
        sum(t.numel for t in everything)
    locations = sorted({t.storage.location for t in everything})
    dcp = None
    if ckpt.members.get("dcp") is not None:
        from ckpttool.io.formats.dcp_layout import dcp_layout

        dcp = dcp_layout(ckpt.members["dcp"])
    return InspectReport(path=ckpt.path, format=ckpt.format, layout=ckpt.layout,
                         file_size=ckpt.file_size, sections=reports, meta=ckpt.meta,
                         globals=ckpt.globals, findings=ckpt.findings,
                         tensor_count=len(everything) + len(composites),
                         parameter_count=params, bytes_by_dtype=dict(by_dtype), locations=locations, dcp=dcp)
