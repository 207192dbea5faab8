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
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ckpttool.errors import OutputRefused

_WRITEBACK = 64 * 1024 * 1024

__all__ = ["HashingSink", "temporary_output", "commit", "check_target", "fsync_dir", "sweep_stale_temporaries"]


class HashingSink:
    """Sequential writes to a descriptor, with the position and the sha256 of all bytes so far.

    Hashing (and the CRC-32 of the current zip record, between ``begin_crc`` and ``end_crc``) runs
    on a worker thread while the next piece is written (both release the GIL); at most one piece
    is in flight, so memory stays bounded by two chunks.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0
        self.sha256 = hashlib.sha256()
        self._crc: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._flushed = 0

    def _hash(self, view: memoryview) -> None:
        self.sha256.update(view)
        if self._crc is not None:
            self._crc = zlib.crc32(view, self._crc)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def write(self, data: bytes | memoryview) -> None:
        """Write ``data``; its hash may run on until the next ``write`` (or ``hexdigest``) returns."""
        view = memoryview(data).cast("B")
        self._wait()
        if len(view) < 1 << 16:
            self._hash(view)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="ckpttool-hash")
            self._pending = self._pool.submit(self._hash, view)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.position += n
        if self.position - self._flushed >= _WRITEBACK:
            self._writeback()

    def _writeback(self) -> None:
        """Start writing the last window to disk now, so the final fsync has little left to wait for."""
        if hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                os.posix_fadvise(self.fd, self._flushed, self.position - self._flushed, os.POSIX_FADV_DONTNEED)
        self._flushed = self.position

    def begin_crc(self) -> None:
        self._wait()
        self._crc = 0

    def end_crc(self) -> int:
        self._wait()
        crc, self._crc = self._crc or 0, None
        return crc

    def hexdigest(self) -> str:
        """The sha256 of everything written (waits for the worker)."""
        self._wait()
        return self.sha256.hexdigest()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


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


_TMP_SUFFIX = ".ckpttool-tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours
        return True
    return True


def sweep_stale_temporaries(output: Path) -> list[Path]:
    """Remove temporaries left beside ``output`` by writers that were killed (their PID is gone).

    Only files named like ours for this very target are considered, so nothing else in the
    folder is ever touched.
    """
    removed = []
    prefix = f".{output.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(output.parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
                continue
            stamp = name[len(prefix):-len(_TMP_SUFFIX)]
            pid_text = stamp.split("-", 1)[0]
            if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def temporary_output(output: Path) -> Iterator[tuple[Path, HashingSink]]:
    """A fresh temporary file beside ``output``; removed unless ``commit`` moved it away.

    The name carries the writer's PID, so the next write to the same target removes what a
    killed writer left (``sweep_stale_temporaries``).
    """
    sweep_stale_temporaries(output)
    tmp = output.parent / f".{output.name}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise OutputRefused(f"cannot create a file in {output.parent}: {exc.strerror or exc}",
                            path=output) from None
    sink = HashingSink(fd)
    try:
        try:
            yield tmp, sink
        finally:
            try:
                sink.close()
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
