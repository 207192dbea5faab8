"""Terminal rendering of a ``ScanReport``: one block per file, its status and the reasons for it."""

from __future__ import annotations

from typing import Any

from ckpttool.ops.scan import ScanReport

__all__ = ["render_scan"]

_STATUS = {"clean": "[green]clean[/green]", "dangerous": "[bold red]DANGEROUS[/bold red]",
           "code": "[bold red]CODE[/bold red]", "suspicious": "[bold magenta]SUSPICIOUS[/bold magenta]",
           "unreadable": "[yellow]unreadable[/yellow]"}
_KIND = {"dangerous": "[bold red]dangerous[/bold red]", "stub": "[yellow]class (stand-in)[/yellow]",
         "data": "[dim]data[/dim]"}


def render_scan(report: ScanReport, *, verbose: bool = False) -> list[Any]:
    from rich.markup import escape
    from rich.table import Table

    out: list[Any] = []
    for f in report.files:
        title = f"{escape(str(f.path))}: {_STATUS[f.status]}" + (f"  [dim]({f.format})[/dim]" if f.format else "")
        out.append(title)
        if f.error is not None and not any(t.message == f.error.message for t in f.resource_traps):
            out.append(f"  [yellow]{f.error.reference}: {escape(f.error.message)}[/yellow]")
        for trap in f.resource_traps:
            where = f" [dim](in {escape(trap.where)})[/dim]" if trap.where else ""
            out.append(f"  [magenta]{trap.code}[/magenta]: {escape(trap.message)}{where}")
        if f.code_files:
            out.append(f"  [red]code[/red]: loading (torch.jit.load, torch.export.load, torch.load) would build "
                       f"and run {len(f.code_files)} file(s):")
            out.extend(f"    {escape(name)}" for name in f.code_files[: None if verbose else 10])
            if len(f.code_files) > 10 and not verbose:
                out.append(f"    [dim]… {len(f.code_files) - 10} more; -v lists them[/dim]")
        table = Table(box=None, padding=(0, 2), show_header=False)
        order = {"dangerous": 0, "stub": 1, "data": 2}
        for g in sorted(f.globals, key=lambda g: (order[g.kind], g.name)):
            if g.kind == "data" and not verbose:
                continue
            where = next((x.where for x in f.findings if x.code == "unsafe.global" and g.name in x.message), None)
            table.add_row("  " + _KIND[g.kind], escape(g.name), f"[dim]at {escape(where)}[/dim]" if where else "")
        if table.row_count:
            out.append(table)
        hidden = sum(1 for g in f.globals if g.kind == "data")
        if hidden and not verbose:
            out.append(f"  [dim]{hidden} plain-data globals (tensor rebuilders, OrderedDict...); -v lists them[/dim]")
    return out
