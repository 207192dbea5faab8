"""The result of ``validate_resume``: a checklist plus every number behind it (DESIGN §7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ckpttool.model import Finding

__all__ = ["Check", "ResumeOptions", "ResumeResult", "Status"]

Status = Literal["pass", "warn", "fail"]
_SEVERITY = {"pass": "info", "warn": "warn", "fail": "error"}


@dataclass(frozen=True)
class Check:
    """One line of the checklist: a stable ``resume.*`` code, its status, what and what to do."""

    code: str
    status: Status
    message: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "status": self.status, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out

    def finding(self) -> Finding:
        return Finding(self.code, _SEVERITY[self.status], self.message, self.hint)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ResumeOptions:
    """The new run's settings; ``epochs`` is read as a total or as additional epochs per ``epochs_mode``."""

    epochs: int
    epochs_mode: Literal["total", "additional"] = "total"
    schedule: str | None = None
    lr_lambda: str | None = None
    lrf: float | None = None
    lr0: float | None = None
    gamma: float = 0.1
    step_size: int = 30
    milestones: tuple[int, ...] = ()
    power: float = 1.0
    steps_per_epoch: int | None = None
    old_epochs: int | None = None
    start_epoch: int | None = None
    max_jump: float = 0.10
    amp: bool = False
    scheduler: Literal["auto", "restore", "rebuild"] = "auto"
    window: int = 5


@dataclass
class ResumeResult:
    """Everything validate-resume found; ``to_dict`` is the ``--json`` document."""

    path: Path
    layout: str
    start_epoch: int | None
    epochs_done: int | None
    new_total_epochs: int | None
    old_total_epochs: int | None
    readings: dict[str, int | None]
    lr: dict[str, float | None]
    curve: dict[str, list[list[float]]]
    full_curve: dict[str, list[list[float]]]
    schedule: dict[str, Any]
    checks: list[Check]
    fixes: list[str] = field(default_factory=list)
    overflow: dict[str, Any] | None = None
    written: dict[str, Any] | None = None
    group_curves: list[dict[str, list[list[float]]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "ok": self.ok,
            "path": str(self.path),
            "layout": self.layout,
            "start_epoch": self.start_epoch,
            "epochs_done": self.epochs_done,
            "new_total_epochs": self.new_total_epochs,
            "old_total_epochs": self.old_total_epochs,
            "epochs_readings": dict(self.readings),
            "lr": dict(self.lr),
            "curve": {k: [list(p) for p in v] for k, v in self.curve.items()},
            "full_curve": {k: [list(p) for p in v] for k, v in self.full_curve.items()},
            "group_curves": [{"group": i, **{k: [list(p) for p in v] for k, v in g.items()}}
                             for i, g in enumerate(self.group_curves)],
            "schedule": dict(self.schedule),
            "overflow": self.overflow,
            "checks": [c.to_dict() for c in self.checks],
            "fixes": list(self.fixes),
            "written": self.written,
        }
