"""Options and output helpers every command shares."""

from __future__ import annotations

import functools
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


def jobs_option(fn: F) -> F:
    """``--jobs N``: worker processes for work over many files or tensors (default: the cores available)."""
    return click.option("--jobs", "-j", "jobs", type=click.IntRange(1, 4096), default=None, metavar="N",
                        help="Worker processes (default: the cores available, shared by the torchrun ranks of one "
                             "machine). Output is the same for any N; under torchrun the work is split over the "
                             "ranks too, N processes each.")(fn)


def resolve_jobs(jobs: int | None) -> int:
    from ckpttool.parallel import default_jobs

    return jobs if jobs is not None else default_jobs()


def quiet_rank() -> bool:
    """True in every process of a torchrun group but rank 0, which alone reports."""
    from ckpttool.parallel import ranks_from_env

    ranks = ranks_from_env()
    return ranks is not None and not ranks.is_leader


def leader_only(fn: F) -> F:
    """Under torchrun, the command runs (and reports) on rank 0 alone; the others wait and exit with its status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ckpttool.parallel import ranks_from_env

        ranks = ranks_from_env()
        if ranks is None:
            return fn(*args, **kwargs)
        with ranks:
            return ranks.on_leader(lambda: fn(*args, **kwargs))

    return wrapper  # type: ignore[return-value]

