"""Findings from what the pickles named: dangerous globals (with where they sit), unknown classes."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ckpttool.errors import CkptError
from ckpttool.io.pickle.globals_policy import GlobalKind
from ckpttool.io.pickle.method_ref import GETATTR
from ckpttool.io.pickle.run import PickleLoad
from ckpttool.model import Finding, GlobalUse, Stub
from ckpttool.tree import walk

__all__ = ["pickle_findings", "dangerous_locations"]


def dangerous_locations(tree: Any) -> dict[str, str]:
    """Map each dangerous stub's global name to the first tree path that holds it."""
    where: dict[str, str] = {}
    try:
        for path, obj in walk(tree):
            if isinstance(obj, Stub) and obj.dangerous:
                where.setdefault(obj.qualname.split("(", 1)[0], path or "<root>")
    except CkptError:  # a tree too big to walk: the finding stands without a location
        pass
    return where


def pickle_findings(loads: list[PickleLoad], tree: Any) -> tuple[list[GlobalUse], list[Finding]]:
    """Globals used across all pickles (with their class) and the findings they call for."""
    counts: Counter[str] = Counter()
    kinds: dict[str, GlobalKind] = {}
    first_member: dict[str, str] = {}
    findings: list[Finding] = []
    for load in loads:
        for (module, name), n in load.globals.items():
            full = f"{module}.{name}"
            counts[full] += n
            kinds[full] = load.kinds[(module, name)]
            first_member.setdefault(full, load.where)
        findings.extend(Finding("format.anomaly", "warn", f"{load.where}: {a}") for a in load.anomalies)
        if load.error is not None:
            findings.append(Finding("format.corrupt", "error", f"{load.where}: {load.error.message}"))
    where = dangerous_locations(tree) if any(k == "dangerous" for k in kinds.values()) else {}
    for full, kind in kinds.items():
        if kind == "dangerous":
            loc = where.get(full)
            findings.append(Finding(
                "unsafe.global", "error",
                f"the file references {full}, which can run code; it was not called",
                hint="do not load this file with torch.load(weights_only=False) or pickle",
                where=loc if loc is not None else first_member[full]))
    refs = sorted({r for load in loads for r in load.method_refs})
    if refs:
        findings.append(Finding("pickle.method-reference", "info",
                                f"{len(refs)} method reference(s) pickled as builtins.getattr(class, name), "
                                "looked up but never called while loading: " + ", ".join(refs[:8])
                                + (" …" if len(refs) > 8 else "")))
    stubs = sorted(f for f, k in kinds.items() if k == "stub" and f not in GETATTR)
    if stubs:
        findings.append(Finding("pickle.foreign-classes", "info",
                                f"{len(stubs)} class(es) pickled by name were read as stand-ins: "
                                + ", ".join(stubs[:8]) + (" …" if len(stubs) > 8 else ""),
                                hint="torch.load(weights_only=True) would refuse this file"))
    globals_ = [GlobalUse(name=f, kind=kinds[f], count=counts[f]) for f in sorted(counts)]
    return globals_, findings
