"""A scan's verdicts: one status per file, and the exit status they add up to.

Statuses, most serious first (a file gets the first that applies):

- ``dangerous``: a global that could run code if it were called (never called here);
- ``code``: a TorchScript archive, whose code ``torch.jit.load`` and ``torch.load`` compile and run;
- ``suspicious``: built to exhaust whoever loads it (``resource.*`` findings), though read safely;
- ``unreadable``: the file could not be read to the end (what was read before is still reported);
- ``clean``: plain data and classes read as stand-ins only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError
from ckpttool.model import Finding, GlobalUse

__all__ = ["FileScan", "ScanReport", "STATUSES", "FAILING_STATUSES"]

STATUSES = ("dangerous", "code", "suspicious", "unreadable", "clean")
FAILING_STATUSES = frozenset({"dangerous", "code", "suspicious"})  # exit 1


@dataclass
class FileScan:
    """One file's verdict."""

    path: Path
    format: str | None = None
    globals: list[GlobalUse] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: CkptError | None = None
    code_files: list[str] = field(default_factory=list)

    @property
    def dangerous(self) -> list[str]:
        return [g.name for g in self.globals if g.kind == "dangerous"]

    @property
    def resource_traps(self) -> list[Finding]:
        return [f for f in self.findings if f.code.startswith("resource.")]

    @property
    def status(self) -> str:
        if self.dangerous:
            return "dangerous"
        if self.code_files:
            return "code"
        if self.resource_traps:
            return "suspicious"
        return "unreadable" if self.error is not None else "clean"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path), "format": self.format, "status": self.status,
                               "dangerous": self.dangerous,
                               "resource": sorted({f.code for f in self.resource_traps}),
                               "code_files": self.code_files,
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
        """1 if a file is dangerous, code or suspicious, else 2 if one was unreadable, else 0."""
        if any(f.status in FAILING_STATUSES for f in self.files):
            return 1
        return 2 if any(f.error is not None for f in self.files) else 0

    @property
    def errors(self) -> list[CkptError]:
        """Every file's read error, in file order (each names its file)."""
        return [f.error for f in self.files if f.error is not None]

    def to_dict(self) -> dict[str, Any]:
        counts = {s: sum(1 for f in self.files if f.status == s) for s in STATUSES}
        return {"schema_version": 1, "exit_code": self.exit_code, "statuses": counts,
                "files": [f.to_dict() for f in self.files]}
