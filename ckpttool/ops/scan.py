"""``scan``: which globals each file's pickles reference, classed as data, stub or dangerous.

Reads every pickle in the file (all five of a legacy stream, every ``.pkl`` member of an
archive) and keeps what was decoded before any parse error: a payload followed by garbage is
still reported. A file that cannot be read is never called clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError
from ckpttool.io import READER_BUG_ERRORS, read_tree, reader_bug
from ckpttool.io.pickle.findings import pickle_findings
from ckpttool.model import Finding, GlobalUse

__all__ = ["FileScan", "ScanReport", "scan_files", "scan_file"]


@dataclass
class FileScan:
    """One file's verdict."""

    path: Path
    format: str | None = None
    globals: list[GlobalUse] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: CkptError | None = None

    @property
    def dangerous(self) -> list[str]:
        return [g.name for g in self.globals if g.kind == "dangerous"]

    @property
    def status(self) -> str:
        if self.dangerous:
            return "dangerous"
        return "unreadable" if self.error is not None else "clean"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path), "format": self.format, "status": self.status,
                               "dangerous": self.dangerous,
                               "globals": [g.to_dict() for g in self.globals],
                               "findings": [f.to_dict() for f in self.findings]}
        if self.error is not None:
            out["error"] = {"reference": self.error.reference, "message": self.error.message}
        return out


@dataclass
class ScanReport:
    files: list[FileScan]

    @property
    def exit_code(self) -> int:
        """1 if anything is dangerous, else 2 if anything was unreadable, else 0."""
        if any(f.dangerous for f in self.files):
            return 1
        return 2 if any(f.error is not None for f in self.files) else 0

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "files": [f.to_dict() for f in self.files]}


def scan_file(path: Path) -> FileScan:
    """Scan one file; errors are recorded in the result, with the globals met before them."""
    result = FileScan(path=path)
    try:
        read = read_tree(path, keep_going=True)
    except CkptError as exc:
        result.error = exc
        return result
    except (RecursionError, MemoryError, *READER_BUG_ERRORS) as exc:
        # a reader bug must not stop a multi-file scan, and an unread file is never clean
        result.error = reader_bug(path, exc)
        return result
    result.format = read.format
    result.globals, result.findings = pickle_findings(read.loads, read.tree)
    result.findings += [Finding("format.anomaly", "warn", a) for a in read.anomalies]
    errors = [load.error for load in read.loads if load.error is not None]
    if errors:
        result.error = errors[0]
    return result


def scan_files(paths: list[Path], jobs: int = 1) -> ScanReport:
    """Scan every path; with ``jobs`` > 1 over worker processes (the report is the same, in the same order)."""
    if jobs <= 1 or len(paths) <= 1:
        return ScanReport([scan_file(p) for p in paths])
    from ckpttool.parallel import run_units

    sizes = []
    for p in paths:
        try:
            sizes.append(p.stat().st_size)
        except OSError:
            sizes.append(0)
    return ScanReport(run_units(lambda i: scan_file(paths[i]), sizes, jobs))
