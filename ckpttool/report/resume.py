"""Terminal rendering of ``validate-resume``: the checklist, the LR figures, a plot of both curves.

The terminal plot uses plotext; ``--plot FILE.png`` uses matplotlib, an optional extra
(``pip install ckpttool[plot]``). Both are imported only when a plot is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ckpttool.ops.resume import ResumeResult

__all__ = ["render_resume", "terminal_plot", "save_plot"]

_STATUS = {"pass": "[green]PASS[/]", "warn": "[yellow]WARN[/]", "fail": "[bold red]FAIL[/]"}


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def render_resume(result: ResumeResult, *, plot: bool = True, width: int = 100, color: bool = False) -> list[Any]:
    """Header facts, the checklist, LR figures around the resume point, the plot and the fixes."""
    from rich.table import Table

    out: list[Any] = [f"[bold]validate-resume[/bold] {result.path}  [dim]({result.layout})[/dim]"]
    if result.start_epoch is not None:
        old_total = result.old_total_epochs if result.old_total_epochs else "?"
        out.append(f"  epochs   {result.epochs_done} done, restart at epoch {result.start_epoch}, new total "
                   f"{result.new_total_epochs} (old total {old_total})")
        out.append(f"  old LR   {result.schedule.get('old') or '—'}")
        out.append(f"  new LR   {result.schedule.get('new') or '—'}")
        lr = result.lr
        jump = f"{lr['jump']:+.2%}" if lr.get("jump") is not None else "—"
        out.append(f"  LR       last trained {_fmt(lr['last_trained'])}, resume {_fmt(lr['resume_old'])} (old) → "
                   f"{_fmt(lr['resume_new'])} (new), jump {jump}")
    for note in result.schedule.get("notes") or []:
        out.append(f"  [dim]note     {note}[/dim]")
    table = Table(box=None, padding=(0, 2), title="checks", title_justify="left", show_header=False)
    for c in result.checks:
        text = c.message + (f"\n[dim]hint: {c.hint}[/dim]" if c.hint else "")
        table.add_row(_STATUS[c.status], c.code, text)
    out.append(table)
    if result.curve.get("old") or result.curve.get("new"):
        out.append(_lr_table(result))
    if plot and (result.full_curve.get("old") or result.full_curve.get("new")):
        from rich.text import Text

        out.append(Text.from_ansi(terminal_plot(result, width=min(width, 100), color=color)))
    for i, fix in enumerate(result.fixes, 1):
        out.append(f"[bold]fix {i}[/bold]: {fix}" if i == 1 else f"fix {i}: {fix}")
    if result.written:
        w = result.written
        out.append(f"[bold]wrote[/bold] {w['path']}  sha256 {w['sha256'][:16]}…  ({w.get('patched')})")
    out.append("[bold green]OK[/]: the resume plan passes" if result.ok
               else "[bold red]FAILED[/]: see the checks above")
    return out


def _lr_table(result: ResumeResult) -> Any:
    from rich.table import Table

    old = {e: v for e, v in result.curve.get("old", [])}
    new = {e: v for e, v in result.curve.get("new", [])}
    table = Table(box=None, padding=(0, 2), title="learning rate around the resume point (param group 0)",
                  title_justify="left")
    for col in ("epoch", "old plan", "resumed run", ""):
        table.add_column(col, justify="right" if col else "left")
    for e in sorted(set(old) | set(new)):
        mark = "◀ resume" if e == result.start_epoch else ""
        table.add_row(f"{e:g}", _fmt(old.get(e)), _fmt(new.get(e)), mark)
    return table


def _xy(points: list[list[float]], limit: int = 2000) -> tuple[list[float], list[float]]:
    step = max(1, len(points) // limit)
    pts = points[::step]
    return [p[0] for p in pts], [p[1] for p in pts]


def _scale(result: ResumeResult) -> int:
    """The power of ten that brings the largest LR into [1, 10): tick labels keep few decimals."""
    values = [p[1] for name in ("old", "new") for p in result.full_curve.get(name, []) if p[1] > 0]
    return math.floor(math.log10(max(values))) if values else 0


def terminal_plot(result: ResumeResult, *, width: int = 100, height: int = 18, color: bool = False) -> str:
    """Old and new LR curves with the resume point marked, as text (plotext 5 or 6)."""
    import plotext as plt

    k = _scale(result)
    curves = []
    for name, label in (("old", "old plan"), ("new", "resumed run")):
        xs, ys = _xy(result.full_curve.get(name, []))
        curves.append((label, xs, [y / 10**k for y in ys]))
    title = f"learning rate ×1e{k} (group 0); resume at epoch {result.start_epoch}"
    ys_all = [y for _, _, ys in curves for y in ys] or [0.0]
    if hasattr(plt, "plot"):  # plotext 5.x: module-level state
        return _plot5(plt, curves, title, result.start_epoch, width, height, color)
    fig = plt.figure
    fig.clear()
    fig.plot_size(width, height)
    for (label, xs, ys), marker in zip(curves, ("braille", "hd")):
        if xs:
            sig = fig.signal(xs, ys, marker=marker)
            sig.label(label)
            sig.lines()
            fig.draw(sig)
    if result.start_epoch is not None:
        fig.draw(fig.segment([result.start_epoch, result.start_epoch], [min(ys_all), max(ys_all)]))
    fig.title(title)
    fig.label("epoch", "x")
    text = str(fig.build().string(colorless=not color))
    fig.clear()
    return text


def _plot5(plt: Any, curves: list[tuple[str, list[float], list[float]]], title: str, start: int | None,
           width: int, height: int, color: bool) -> str:
    plt.clear_figure()
    plt.plotsize(width, height)
    if not color:
        plt.theme("clear")
    for label, xs, ys in curves:
        if xs:
            plt.plot(xs, ys, label=label)
    if start is not None:
        plt.vline(start)
    plt.title(title)
    plt.xlabel("epoch")
    text = str(plt.build())
    plt.clear_figure()
    return text


def save_plot(result: ResumeResult, path: Path) -> Path:
    """Write the two curves as an image with matplotlib (the ``plot`` extra).

    Raises:
        UsageError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as mpl
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed",
                         hint="pip install 'ckpttool[plot]'") from None
    fig, ax = mpl.subplots(figsize=(8, 4.5), dpi=120)
    for name, label, style in (("old", "old plan", "-"), ("new", "resumed run", "--")):
        xs, ys = _xy(result.full_curve.get(name, []), limit=20000)
        if xs:
            ax.plot(xs, ys, style, label=label)
    if result.start_epoch is not None:
        ax.axvline(result.start_epoch, color="grey", linewidth=0.8, label=f"resume (epoch {result.start_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate (param group 0)")
    jump = result.lr.get("jump")
    ax.set_title(f"{Path(result.path).name}: LR jump {jump:+.1%}" if jump is not None else Path(result.path).name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    mpl.close(fig)
    return path
