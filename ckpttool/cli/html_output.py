"""``--html OUT`` and ``--open``: the self-contained page of inspect, diff and validate-resume."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["html_options", "check_html", "emit_html"]

F = TypeVar("F", bound=Callable[..., Any])


def html_options(fn: F) -> F:
    """``--html OUT`` writes the report page; ``--open`` shows it in the default browser."""
    fn = click.option("--open", "open_html", is_flag=True,
                      help="Open the --html page in the default web browser.")(fn)
    return click.option("--html", "html_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
                        metavar="OUT.html",
                        help="Also write a self-contained HTML report (needs: pip install 'ckpttool[report]').")(fn)


def check_html(html_out: Path | None, open_html: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse bad combinations, a missing extra and an unwritable target before any work is done."""
    from ckpttool.errors import UsageError

    if open_html and html_out is None:
        raise UsageError("--open needs --html OUT.html")
    if html_out is not None:
        from ckpttool.io.write.atomic import check_target
        from ckpttool.report.html import is_report_file, require_extra

        require_extra()
        check_target(html_out, list(inputs), force=is_report_file(html_out))


def emit_html(kind: str, document: dict[str, Any], html_out: Path | None, open_html: bool,
              inputs: Sequence[Path], title: str) -> None:
    """Write the page (atomically) and open it when asked."""
    if html_out is None:
        return
    from ckpttool.report.html import write_html

    written = write_html(kind, document, html_out, inputs=inputs, title=title)
    if open_html:
        import webbrowser

        webbrowser.open(written.resolve().as_uri())
