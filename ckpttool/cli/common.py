"""Options and output helpers every command shares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["json_option", "input_path", "emit_json", "console", "print_renderable"]

F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    """``--json``: one JSON document on stdout instead of the human view."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document on stdout (schema in the README).")(fn)


def input_path() -> click.Path:
    """A path argument that may not exist yet: the library reports missing files itself."""
    return click.Path(path_type=Path, dir_okay=True, exists=False)


def emit_json(data: dict[str, Any]) -> None:
    """Write ``data`` as JSON on stdout."""
    indent = 2 if sys.stdout.isatty() else None  # the C encoder only runs without indent
    sys.stdout.write(json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


def console(stderr: bool = False) -> Any:
    """A rich console: colour only on a terminal, wide enough for key names when piped."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 120, soft_wrap=False,
                   highlight=False)


def print_renderable(*renderables: Any) -> None:
    con = console()
    for r in renderables:
        con.print(r)
