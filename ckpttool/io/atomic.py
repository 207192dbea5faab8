"""Atomic output: a temporary file beside the target, fsynced, renamed into place only when verified.

Whatever goes wrong (an error, an exception injected by a test, Ctrl-C), the temporary file is
removed and the target is left as it was. Without ``force`` the final step links rather than
renames, so a file that appeared at the target meanwhile is never replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ckpttool.errors import OutputRefused

__all__ = ["HashingSink", "temporary_output", "commit", "check_target", "fsync_dir"]


class HashingSink:
    """Sequential writes to a descriptor, with the position and the sha256 of all bytes so far."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.position += n


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_target(output: Path, inputs: tuple[Path, ...] | list[Path], force: bool) -> None:
    """Refuse to write onto an input (ever) or onto an existing file (without ``force``)."""
    for src in inputs:
        if _same(output, Path(src)):
            raise OutputRefused("the output is one of the inputs; write to another path", path=output)
    if output.is_dir():
        raise OutputRefused("the output is a directory", path=output)
    if output.exists() and not force:
        raise OutputRefused("the output exists", hint="pass --force to replace it", path=output)
    if not output.parent.is_dir():
        raise OutputRefused("the output folder does not exist", path=output)


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def temporary_output(output: Path) -> Iterator[tuple[Path, HashingSink]]:
    """A fresh temporary file beside ``output``; removed unless ``commit`` moved it away."""
    tmp = output.parent / f".{output.name}.{secrets.token_hex(4)}.ckpttool-tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise OutputRefused(f"cannot create a file in {output.parent}: {exc.strerror or exc}",
                            path=output) from None
    try:
        try:
            yield tmp, HashingSink(fd)
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def commit(tmp: Path, output: Path, force: bool) -> None:
    """Move the verified ``tmp`` to ``output`` (replacing it only with ``force``)."""
    try:
        if force:
            os.replace(tmp, output)
        else:
            try:
                os.link(tmp, output)
            except FileExistsError:
                raise OutputRefused("the output appeared while it was being written",
                                    hint="pass --force to replace it", path=output) from None
            except OSError:  # a filesystem without hard links
                if output.exists():
                    raise OutputRefused("the output exists", hint="pass --force to replace it",
                                        path=output) from None
                os.replace(tmp, output)
    except OutputRefused:
        raise
    except OSError as exc:
        raise OutputRefused(f"cannot move the written file into place: {exc.strerror or exc}",
                            path=output) from None
    fsync_dir(output.parent)
