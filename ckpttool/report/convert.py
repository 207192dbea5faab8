"""Terminal rendering of a ``convert`` result: what was read, what was written, what changed on the way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckpttool.report.text import human_bytes

if TYPE_CHECKING:  # pragma: no cover
    from ckpttool.ops.convert import ConvertResult

__all__ = ["render_convert"]


def render_convert(result: ConvertResult) -> list[Any]:
    """A few lines: input → output, content, casts, aliases, sanitising changes, and the sha256."""
    out: list[Any] = [
        f"[bold]read[/bold]   {result.input}  [dim]({result.input_format}, {result.layout})[/dim]",
        f"[bold]wrote[/bold]  {result.output}  [dim]({result.output_format}, {result.content}, "
        f"{result.tensors} tensors, {human_bytes(result.nbytes)})[/dim]",
    ]
    if len(result.shards) > 1:
        out.append(f"  {len(result.shards)} shards:")
        out.extend(f"    {s.path.name}  {s.tensors} tensors, {human_bytes(s.nbytes)}  sha256 {s.sha256[:16]}…"
                   for s in result.shards)
    if result.dtype:
        line = (f"  dtype  {result.cast} floating tensors cast to {result.dtype}" if result.cast
                else f"  dtype  every floating tensor was already {result.dtype}")
        if result.not_cast:
            line += f"; left as they were: {', '.join(result.not_cast[:5])}"
            line += " …" if len(result.not_cast) > 5 else ""
        out.append(line)
    if result.aliases:
        shown = ", ".join(f"{a} → {t}" for a, t in list(result.aliases.items())[:3])
        more = " …" if len(result.aliases) > 3 else ""
        how = ("restored as shared tensors" if result.output_format == "torch-zip"
               else "stored once, recorded as aliases")
        out.append(f"  tied   {len(result.aliases)} {how}: {shown}{more}")
    if result.views:
        shown = ", ".join(f"{v} ⊂ {o}" for v, o in list(result.views.items())[:3])
        out.append(f"  views  {len(result.views)} stored inside the tensor they view (recorded as views): {shown}")
    if result.excluded:
        shown = ", ".join(result.excluded[:5]) + (" …" if len(result.excluded) > 5 else "")
        out.append(f"  excluded {len(result.excluded)} by --drop: {shown}")
    for change in result.changes:
        out.append(f"  sanitized {change.path}: {change.was} → {change.now}")
    for note in result.notes:
        out.append(f"  [dim]{note}[/dim]")
    if result.sha256:
        out.append(f"sha256 {result.sha256}")
    return out
