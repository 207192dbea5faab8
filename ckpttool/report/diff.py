"""Rich rendering of a ``DiffResult``: a summary table, then only what changed (or everything).

Keys and values come from untrusted files, so they are always escaped before rich sees them.
"""

from __future__ import annotations

from typing import Any

from ckpttool.ops.diff.result import DiffResult, GroupRow, SectionDiff, TensorDiff

__all__ = ["render_diff"]

_STATUS_STYLE = {"identical": "dim", "close": "cyan", "changed": "yellow", "shape": "red", "only_a": "magenta",
                 "only_b": "magenta", "not_compared": "red"}
_STATUS_LABEL = {"identical": "identical", "close": "≈ tol", "changed": "changed", "shape": "shape",
                 "only_a": "only A", "only_b": "only B", "not_compared": "not compared"}
_KIND_LABEL = {"parameter": "param", "buffer": "buffer", "tensor": "tensor"}


def _esc(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.3e}"


def _cosine(value: float | None) -> str:
    return "—" if value is None else f"{value:.6f}"


def _summary(result: DiffResult) -> Any:
    from rich.table import Table

    table = Table(title=f"diff {_esc(result.a)} → {_esc(result.b)}", title_justify="left", box=None,
                  padding=(0, 1))
    for col in ("section", "A", "B", "tensors", "identical", "within tol", "changed", "shape", "dtype",
                "only A", "only B", "other"):
        table.add_column(col, justify="left" if col in ("section", "A", "B") else "right")
    for s in result.sections:
        c = s.to_dict()["counts"]
        table.add_row(s.name, _esc(_source(s.source_a, s.missing == "a")), _esc(_source(s.source_b, s.missing == "b")),
                      str(len(s.entries)), str(c["identical"]), _hl(c["close"], "cyan"), _hl(c["changed"], "yellow"),
                      _hl(c["shape"], "red"), _hl(c["dtype_changed"], "red"), _hl(c["only_a"], "magenta"),
                      _hl(c["only_b"], "magenta"), _hl(len(s.meta_changed), "yellow"))
    return table


def _source(source: str | None, missing: bool) -> str:
    if missing:
        return "(missing)"
    return source if source else "(root)"


def _hl(n: int, style: str) -> str:
    return f"[{style}]{n}[/]" if n else "0"


def _entries(section: SectionDiff, entries: list[TensorDiff], qualify: bool) -> Any:
    from rich.table import Table

    nonfinite = any(e.stats is not None and (e.stats.nan_a or e.stats.nan_b or e.stats.inf_a or e.stats.inf_b)
                    for e in entries)
    table = Table(title=f"{section.name}: tensors", title_justify="left", box=None, padding=(0, 1))
    longest = max((len(e.key) + (len(section.name) + 1 if qualify else 0) + len(_renamed_from(e))
                   for e in entries), default=3)
    table.add_column("key", no_wrap=True, min_width=min(longest, 60))
    for col in ("kind", "status", "dtype", "shape"):
        table.add_column(col, no_wrap=True)
    for col in ("max |Δ|", "mean |Δ|", "rel L2", "cosine", "mismatched"):
        table.add_column(col, justify="right", no_wrap=True)
    if nonfinite:
        table.add_column("NaN/Inf", justify="right", no_wrap=True, min_width=max(len(_nonfinite(e)) for e in entries))
    for e in entries:
        key = f"{section.name}.{e.key}" if qualify else e.key
        cells = _stats_cells(e)
        table.add_row(_esc(key) + f"[dim]{_esc(_renamed_from(e))}[/]", _KIND_LABEL.get(e.kind, e.kind),
                      f"[{_STATUS_STYLE[e.status]}]{_STATUS_LABEL[e.status]}[/]", _pair(e.dtype_a, e.dtype_b),
                      _pair(_shape(e.shape_a), _shape(e.shape_b)), *(cells if nonfinite else cells[:-1]))
    return table


def _renamed_from(e: TensorDiff) -> str:
    """`` ← A's name`` when alignment renamed the key, unless it only lost a prefix (``model.``, ``module.``)."""
    if e.key_a is None or e.key_a.endswith("." + e.key):
        return ""
    return f" ← {e.key_a}"


def _pair(a: object, b: object) -> str:
    if a is None or b is None:
        return _esc(a if a is not None else b)
    return _esc(a) if a == b else f"[red]{_esc(a)}→{_esc(b)}[/]"


def _shape(shape: tuple[int, ...] | None) -> str | None:
    return None if shape is None else "×".join(map(str, shape)) or "scalar"


def _stats_cells(e: TensorDiff) -> list[str]:
    s = e.stats
    if s is None or e.status == "identical":
        return ["", "", "", "", "", ""]
    nonfinite = _nonfinite(e)
    pct = f"{s.mismatched_fraction:.3g}" if s.mismatched_fraction < 0.01 else f"{100 * s.mismatched_fraction:.3g}%"
    return [_num(s.max_abs), _num(s.mean_abs), _num(s.rel_l2), _cosine(s.cosine),
            f"{s.mismatched:,} ({pct})", f"[red]{nonfinite}[/]" if nonfinite else ""]


def _nonfinite(e: TensorDiff) -> str:
    s = e.stats
    if s is None:
        return ""
    return " ".join(f"{name}={getattr(s, name):,}" for name in ("nan_a", "nan_b", "inf_a", "inf_b") if getattr(s, name))


def _groups(rows: list[GroupRow], depth: int | None, show_all: bool) -> Any:
    from rich.table import Table

    table = Table(title=f"by module (depth {depth})", title_justify="left", box=None, padding=(0, 1))
    for col in ("module", "tensors", "identical", "within tol", "changed", "shape", "dtype", "only A", "only B",
                "max |Δ|", "min cosine"):
        table.add_column(col, justify="left" if col == "module" else "right")
    for g in rows:
        if not show_all and not g.changed and not g.counts["close"]:
            continue
        c = g.counts
        table.add_row(_esc(g.group), str(g.tensors), str(c["identical"]), _hl(c["close"], "cyan"),
                      _hl(c["changed"], "yellow"), _hl(c["shape"], "red"), _hl(c["dtype_changed"], "red"),
                      _hl(c["only_a"], "magenta"), _hl(c["only_b"], "magenta"), _num(g.max_abs), _cosine(g.min_cosine))
    return table


def _meta_lines(result: DiffResult) -> list[str]:
    lines: list[str] = []
    for s in result.sections:
        for m in s.meta_changed:
            lines.append(_esc(m.render(prefix=f"{s.name}.")))
    return lines


def render_diff(result: DiffResult, *, show_all: bool = False) -> list[Any]:
    """Renderables for ``result``: summary, changed entries (all with ``show_all``), meta, verdict."""
    out: list[Any] = [_summary(result)]
    qualify = result.section == "all"
    if result.groups is not None:
        out.append(_groups(result.groups, result.group_depth, show_all))
    else:
        for s in result.sections:
            shown = s.entries if show_all else [e for e in s.entries if e.status != "identical" or e.dtype_changed]
            if shown:
                out.append(_entries(s, shown, qualify))
    for s in result.sections:
        if s.dropped:
            out.append(f"[dim]{s.name}: {len(s.dropped)} keys of A dropped by --rules/--like: "
                       f"{_esc(', '.join(s.dropped[:8]))}{' …' if len(s.dropped) > 8 else ''}[/]")
        if s.findings:
            from ckpttool.report.text import findings_table

            out.append(findings_table(s.findings))
    meta = _meta_lines(result)
    if meta:
        out.append("[bold]non-tensor changes[/]\n  " + "\n  ".join(meta))
    for r in result.rules:
        mark = "[red]FAIL[/]" if r.failed else "[green]ok[/]"
        keys = ", ".join(r.failed_keys[:8]) + (f" … {len(r.failed_keys) - 8} more" if len(r.failed_keys) > 8 else "")
        out.append(f"{mark} --fail-on {_esc(r.rule)}" + (f": {_esc(keys)}" if r.failed else ""))
    for s in result.sections:
        out.append(f"[bold]{s.name}[/]: {_esc(s.verdict())}")
    verdict = "[green]equal[/]" if result.equal else "[yellow]different[/]"
    tol = f"rtol={result.rtol:g}, atol={result.atol:g}"
    line = f"{verdict} ({tol}{', dtype changes ignored' if result.ignore_dtype else ''})"
    if result.rules:
        broken = sum(r.failed for r in result.rules)
        line += f"; --fail-on decides: {broken} of {len(result.rules)} rules broken"
    out.append(line)
    return out
