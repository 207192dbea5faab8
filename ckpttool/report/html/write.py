"""Write a report page atomically: a temporary file beside the target, read back, then renamed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ckpttool.errors import OutputRefused, VerificationFailed
from ckpttool.io.write.atomic import check_target, commit, temporary_output
from ckpttool.report.html.render import MARKER, render_html

__all__ = ["write_html", "is_report_file"]


def is_report_file(path: Path) -> bool:
    """Whether ``path`` is a report ckpttool wrote earlier (the only kind of file replaced unasked)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return MARKER.encode() in head


def write_html(kind: str, document: dict[str, Any], output: Path, *, inputs: Sequence[Path] = (),
               title: str = "") -> Path:
    """Render the ``kind`` page of ``document`` to ``output``.

    An earlier report at ``output`` is replaced; any other existing file, and every input, is refused.

    Raises:
        UsageError: the ``report`` extra is not installed.
        OutputRefused: the target is an input, a folder, or an existing file that is not a report.
        VerificationFailed: the written bytes do not read back the same.
    """
    output = Path(output)
    page = render_html(kind, document, title=title or f"ckpttool {kind}").encode("utf-8")
    check_target(output, [Path(p) for p in inputs], force=is_report_file(output))
    with temporary_output(output) as (tmp, sink):
        try:
            sink.write(page)
            os.fsync(sink.fd)
        except OSError as exc:
            raise OutputRefused(f"writing failed: {exc.strerror or exc}", path=output) from None
        digest = sink.hexdigest()
        if hashlib.sha256(tmp.read_bytes()).hexdigest() != digest:
            raise VerificationFailed("the report read back differs from what was written", path=output)
        commit(tmp, output, force=is_report_file(output))  # never a file that appeared meanwhile
    return output
