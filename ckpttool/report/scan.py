"""Terminal rendering of a ``ScanReport``: one block per file, dangerous globals first."""

from __future__ import annotations

from typing import Any

from ckpttool.ops.scan import ScanReport

__all__ = ["render_scan"]

_STATUS = {"clean": "[green]clean[/green]", "dangerous": "[bold red]DANGEROUS[/bold red]",
           "unreadable": "[yellow]unreadable[/yellow]"}
_KIND = {"dangerous": "[bold red]dangerous[/bold red]", "stub": "[yellow]class (stand-in)[/yellow]",
         "data": "[dim]data[/dim]"}


def render_scan(report: ScanReport, *, verbose: bool = False) -> list[Any]:
    from rich.table import Table

    out: list[Any] = []
    for f in report.files:
        title = f"{f.path}: {_STATUS[f.status]}" + (f"  [dim]({f.format})[/dim]" if f.format else "")
        out.append(title)
        if f.error is not None:
            out.append(f"  [yellow]{f.error.reference}: {f.error.message}[/yellow]")
        table = Table(box=None, padding=(0, 2), show_header=False)
        order = {"dangerous": 0, "stub": 1, "data": 2}
        for g in sorted(f.globals, key=lambda g: (order[g.kind], g.name)):
            if g.kind == "data" and not verbose:
                continue
            where = next((x.where for x in f.findings if x.code == "unsafe.global" and g.name in x.message), None)
            table.add_row("  " + _KIND[g.kind], g.name, f"[dim]at {where}[/dim]" if where else "")
        if table.row_count:
            out.append(table)
        hidden = sum(1 for g in f.globals if g.kind == "data")
        if hidden and not verbose:
            out.append(f"  [dim]{hidden} plain-data globals (tensor rebuilders, OrderedDict...); -v lists them[/dim]")
    return out
