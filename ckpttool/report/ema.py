"""Terminal rendering of ``extract-ema`` results: where the EMA was, how it was checked, what was written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckpttool.report.text import findings_table, human_bytes

if TYPE_CHECKING:  # pragma: no cover
    from ckpttool.ops.ema import EmaCandidate, EmaList, EmaResult

__all__ = ["render_ema", "render_ema_list"]


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def _counters(c: EmaCandidate) -> str:
    parts = []
    if c.updates is not None:
        parts.append(f"updates {c.updates:,} [dim]({c.updates_key})[/dim]")
    if c.decay is not None:
        parts.append(f"decay {c.decay:g}")
    return ", ".join(parts) or "[dim]no update counter or decay recorded[/dim]"


def render_ema(result: EmaResult) -> list[Any]:
    """A few lines of facts, the most-changed tensors, the findings, and what was written."""
    from rich.table import Table

    c, cov, dist = result.candidate, result.coverage, result.distance
    out: list[Any] = [f"[bold]EMA[/bold] {c.source}  [dim]({c.layout})[/dim]", f"  why      {c.reason}",
                      f"  counters {_counters(c)}"]
    scope = f" under {c.scope!r}" if c.scope else ""
    line = f"  coverage {cov.from_ema} of {cov.model_keys} model keys{scope} from the EMA"
    if cov.buffers_copied or cov.parameters_missing or cov.out_of_scope:
        line += (f"; copied from the raw weights: {len(cov.buffers_copied)} buffers, "
                 f"{len(cov.parameters_missing)} parameters, {cov.out_of_scope} outside the averaged module")
    out.append(line)
    if dist is not None:
        out.append(f"  distance max |Δ| {_fmt(dist.max_abs)}, relative L2 {_fmt(dist.rel_l2)} vs "
                   f"{c.model_source} ({dist.compared} floating tensors, {dist.identical} identical)")
        table = Table(box=None, padding=(0, 2), title="most changed", title_justify="left")
        for col in ("tensor", "max |Δ|", "rel L2"):
            table.add_column(col, justify="left" if col == "tensor" else "right")
        for t in sorted((t for t in dist.tensors if t.rel_l2), key=lambda t: t.rel_l2 or 0, reverse=True)[:5]:
            table.add_row(t.key, _fmt(t.max_abs), _fmt(t.rel_l2))
        if table.row_count:
            out.append(table)
    if result.findings:
        out.append(findings_table(result.findings))
    out += _written(result)
    return out


def _written(result: EmaResult) -> list[Any]:
    if result.written:
        what = "training checkpoint with the EMA as its weights" if result.into_checkpoint else "state_dict"
        cast = f", cast to {result.dtype}" if result.dtype else ""
        lines = [f"[green]wrote[/green] {result.output}: {what} ({result.format}, {result.tensors} tensors{cast}, "
                 f"{human_bytes(result.nbytes)})", f"  sha256 {result.sha256}"]
        return lines + [f"  [dim]{n}[/dim]" for n in result.notes]
    if result.output is not None and not result.ok:
        return ["[bold red]nothing written[/bold red]: fix the errors above first"]
    return ["[dim]nothing written (no output requested)[/dim]"]


def render_ema_list(listing: EmaList) -> list[Any]:
    """One block per EMA candidate; the default (what extract-ema takes without --source) first."""
    out: list[Any] = [f"{listing.path}: {len(listing.candidates)} EMA candidate(s) in a {listing.layout} checkpoint"]
    for i, c in enumerate(listing.candidates):
        dtypes = ", ".join(sorted({t.dtype for t in c.ema.tensors.values()})) or "—"
        mark = "[green]default[/green]" if i == 0 else f"--source {c.source}"
        out += [f"[bold]{c.source}[/bold]  [dim]({c.layout}; {mark})[/dim]", f"  why      {c.reason}",
                f"  tensors  {len(c.ema)} ({dtypes}); raw weights: {c.model_source or 'none in the file'}",
                f"  counters {_counters(c)}"]
        out += [f"  [red]problem[/red]  {p}" for p in c.problems]
    return out
