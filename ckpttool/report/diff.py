"""Rich rendering of a ``DiffResult``: a summary table, then only what changed (or everything).

Keys and values come from untrusted files, so they are always escaped before rich sees them.
"""

from __future__ import annotations

from typing import Any

from ckpttool.ops.diff.result import DiffResult, GroupRow, SectionDiff, TensorDiff

__all__ = ["render_diff"]

_STATUS_STYLE = {"identical": "dim", "close": "cyan", "changed": "yellow", "shape": "red", "only_a": "magenta",
                 "only_b": "magenta"}
_STATUS_LABEL = {"identical": "identical", "close": "within tol", "changed": "changed", "shape": "shape",
                 "only_a": "only in A", "only_b": "only in B"}


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

    table = Table(title=f"{section.name}: tensors", title_justify="left", box=None, padding=(0, 1))
    for col in ("key", "kind", "status", "dtype", "shape", "max |Δ|", "mean |Δ|", "rel L2", "cosine", "mismatched"):
        table.add_column(col, justify="right" if col in ("max |Δ|", "mean |Δ|", "rel L2", "cosine",
                                                         "mismatched") else "left")
    for e in entries:
        key = f"{section.name}.{e.key}" if qualify else e.key
        table.add_row(_esc(key) + (f" [dim]← {_esc(e.key_a)}[/]" if e.key_a else ""), e.kind,
                      f"[{_STATUS_STYLE[e.status]}]{_STATUS_LABEL[e.status]}[/]", _pair(e.dtype_a, e.dtype_b),
                      _pair(_shape(e.shape_a), _shape(e.shape_b)), *_stats_cells(e))
    return table


def _pair(a: object, b: object) -> str:
    if a is None or b is None:
        return _esc(a if a is not None else b)
    return _esc(a) if a == b else f"[red]{_esc(a)} → {_esc(b)}[/]"


def _shape(shape: tuple[int, ...] | None) -> str | None:
    return None if shape is None else "×".join(map(str, shape)) or "scalar"


def _stats_cells(e: TensorDiff) -> list[str]:
    s = e.stats
    if s is None or e.status == "identical":
        return ["", "", "", "", ""]
    mismatched = f"{s.mismatched:,} ({s.mismatched_fraction:.1%})"
    nonfinite = [f"{name}={getattr(s, name)}" for name in ("nan_a", "nan_b", "inf_a", "inf_b") if getattr(s, name)]
    if nonfinite:
        mismatched += f" [red]{' '.join(nonfinite)}[/]"
    return [_num(s.max_abs), _num(s.mean_abs), _num(s.rel_l2), _cosine(s.cosine), mismatched]


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
    out.append(f"{verdict} ({tol}{', dtype changes ignored' if result.ignore_dtype else ''})")
    return out
