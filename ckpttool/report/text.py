"""Small text helpers every report shares: sizes, counts, and the findings table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ckpttool.model import Finding

__all__ = ["human_bytes", "human_count", "findings_table", "SEVERITY_STYLE"]

SEVERITY_STYLE = {"error": "bold red", "warn": "yellow", "info": "dim"}


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def human_count(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f}B"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 10_000:
        return f"{n / 1e3:.1f}K"
    return f"{n:,}"


def findings_table(findings: Sequence[Finding]) -> Any:
    """One row per finding: severity, code, message (+ where and hint)."""
    from rich.table import Table

    table = Table(title="findings", title_justify="left", box=None, padding=(0, 2), show_header=False)
    for f in findings:
        text = f.message
        if f.where:
            text += f"  [dim](at {f.where})[/dim]"
        if f.hint:
            text += f"\n[dim]hint: {f.hint}[/dim]"
        table.add_row(f"[{SEVERITY_STYLE.get(f.severity, '')}]{f.severity}[/]", f.code, text)
    return table
