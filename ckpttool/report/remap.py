"""Terminal rendering of a ``RemapResult``: the mapping table with reasons, drops, coverage, findings."""

from __future__ import annotations

from typing import Any

from ckpttool.ops.remap.run import RemapResult
from ckpttool.report.text import findings_table

__all__ = ["render_remap"]


def render_remap(result: RemapResult, *, show_unchanged: bool = True) -> list[Any]:
    """Everything but the closing verdict line (``RemapResult.verdict``), which is printed unwrapped."""
    from rich.markup import escape
    from rich.table import Table

    out: list[Any] = []
    p = result.plan
    head = (f"{result.input}  [dim]({result.layout}, keys of the {result.source_section} section)[/dim]: "
            f"{len(p.renamed)} renamed, {len(p.unchanged)} unchanged, {len(p.dropped)} dropped")
    out.append(head)
    table = Table(box=None, padding=(0, 2), title="mapping", title_justify="left")
    table.add_column("from")
    table.add_column("to")
    table.add_column("reason", style="dim")
    for r in p.mapping:
        if r.src != r.dst:
            table.add_row(escape(r.src), f"[bold]{escape(r.dst)}[/bold]", escape(r.reason))
        elif show_unchanged:
            table.add_row(escape(r.src), "[dim]=[/dim]", escape(r.reason))
    for key, why in p.dropped:
        table.add_row(escape(key), "[red]dropped[/red]", escape(why))
    out.append(table)
    if result.coverage is not None:
        c = result.coverage
        verdict = ("[green]strict load will pass[/green]" if c.loads_strict
                   else "[yellow]strict load would fail[/yellow]")
        out.append(f"coverage against {escape(c.target)}: {len(c.matched)} matched, {len(c.missing)} missing, "
                   f"{len(c.unexpected)} unexpected, {len(c.shape_mismatched)} shape-mismatched: {verdict}")
        for label, keys in (("missing", c.missing), ("unexpected", c.unexpected)):
            if keys:
                out.append(f"  {label}: " + escape(", ".join(keys[:10])) + (" ..." if len(keys) > 10 else ""))
        for key, have, want in c.shape_mismatched[:10]:
            out.append(f"  shape: {escape(key)} {list(have)} vs target {list(want)}")
    for s in result.sections:
        out.append(f"[dim]section {s.kind} at {escape(s.source)}: {s.kept} kept, {s.renamed} renamed, "
                   f"{s.dropped} dropped[/dim]")
    for o in result.optimizers:
        if o.value is not None:
            out.append(f"[dim]optimizer state: {o.moved} moved, {o.dropped} dropped (matched by {o.recipe})[/dim]")
    if result.findings:
        out.append(findings_table(result.findings))
    if result.output is not None:
        w = result.output
        # a DCP folder has no single digest; its tensors were verified one by one instead
        digest = f"sha256 {w.sha256}" if w.sha256 else "each tensor verified by reading it back"
        out.append(f"wrote {escape(str(w.path))} ({w.format}, {w.tensors} tensors) {digest}")
    elif result.dry_run and not result.partial:
        out.append("[dim]dry run: nothing written[/dim]")
    return out
