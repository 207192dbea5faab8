"""Every error ckpttool raises on purpose, with its exit status and stable reference.

This module imports nothing else from ckpttool so that any layer may raise these. The CLI maps
them to one line on stderr: ``ckpttool: error[<reference>]: <path>: <message>`` plus a hint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

__all__ = [
    "CkptError",
    "UnreadableCheckpoint",
    "TruncatedFile",
    "CorruptPickle",
    "ResourceLimit",
    "NestingLimit",
    "ExpansionLimit",
    "InflationLimit",
    "AllocationLimit",
    "UnsupportedFormat",
    "SectionNotFound",
    "UnsafeContent",
    "OutputRefused",
    "VerificationFailed",
    "UsageError",
    "RemapConflict",
    "about",
]


class CkptError(Exception):
    """Base of every error the library raises on purpose; library callers catch this alone."""

    exit_code: ClassVar[int] = 2
    reference: ClassVar[str] = "ckpt-error"

    def __init__(self, message: str, *, hint: str | None = None, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = Path(path) if path is not None else None

    def one_line(self) -> str:
        """The message as the CLI prints it: reference, file, what is wrong."""
        where = f"{self.path}: " if self.path is not None else ""
        return f"error[{self.reference}]: {where}{self.message}"


class UnreadableCheckpoint(CkptError):
    """The input is missing, corrupt or not a checkpoint at all."""

    reference = "unreadable-checkpoint"


class TruncatedFile(UnreadableCheckpoint):
    """The file ends before a structure it declares."""

    reference = "truncated-file"


class CorruptPickle(UnreadableCheckpoint):
    """The pickle stream is malformed (bad opcode, stack underflow, bad frame...)."""

    reference = "corrupt-pickle"


class ResourceLimit(UnreadableCheckpoint):
    """The input asks for more depth, nodes or bytes than a file of its size can honestly need."""

    reference = "resource-limit"
    # the finding ``scan`` reports for it: a file built to exhaust its reader is suspicious
    trap: ClassVar[str] = "resource.limit"


class NestingLimit(ResourceLimit):
    """Nesting deeper than loaders survive (a deep tuple hashed as a dict key crashes CPython)."""

    trap = "resource.deep-nesting"


class ExpansionLimit(ResourceLimit):
    """Shared (memoised) objects whose logical expansion is out of all proportion to the file."""

    trap = "resource.memo-explosion"


class InflationLimit(ResourceLimit):
    """A compressed record that inflates far beyond what its compressed size can honestly hold."""

    trap = "resource.zip-bomb"


class AllocationLimit(ResourceLimit):
    """A storage declaring more bytes than any machine holds: a loader that allocates first dies."""

    trap = "resource.huge-storage"


class UnsupportedFormat(CkptError):
    """The input is readable but of a format or layout this operation cannot handle."""

    reference = "unsupported-format"


class SectionNotFound(UnsupportedFormat):
    """The requested section (model, ema, optimizer...) is not in this checkpoint."""

    reference = "section-not-found"


class UnsafeContent(CkptError):
    """An operation would need to run code named by the file; refused without --unsafe."""

    reference = "unsafe-content"


class OutputRefused(CkptError):
    """The output path exists, is the input, or cannot be written."""

    reference = "output-refused"


class VerificationFailed(OutputRefused):
    """Re-reading a written file did not give back what was meant to be written."""

    reference = "verification-failed"


class UsageError(CkptError):
    """Options that contradict each other or name things that do not exist."""

    reference = "usage-error"


class RemapConflict(CkptError):
    """A remap would send two keys to one name, or could not be applied unambiguously."""

    reference = "remap-conflict"


@contextlib.contextmanager
def about(path: Path | str) -> Iterator[None]:
    """Name ``path`` in any ``CkptError`` raised inside that does not name a file yet."""
    try:
        yield
    except CkptError as exc:
        if exc.path is None:
            exc.path = Path(path)
        raise
