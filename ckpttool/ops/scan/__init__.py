"""``scan``: what each file's pickles name and how its bytes are built, summed up as one status.

Reads every pickle in the file (all five of a legacy stream, every ``.pkl`` member of an
archive) and keeps what was decoded before any parse error: a payload followed by garbage is
still reported. Globals are classed data, stand-in or dangerous; a TorchScript archive is code;
structures built to exhaust a loader (memo explosions, self-containing containers, nesting no
loader survives, zip bombs) are suspicious. A file that cannot be read is never called clean.
Nothing here imports torch or reads tensor bytes.
"""

from __future__ import annotations

from pathlib import Path

from ckpttool.errors import CkptError, ResourceLimit
from ckpttool.io import READER_BUG_ERRORS, read_tree, reader_bug
from ckpttool.io.formats.zip_index import ZipIndex
from ckpttool.io.pickle.findings import pickle_findings
from ckpttool.model import Finding
from ckpttool.ops.scan.archive import archive_facts
from ckpttool.ops.scan.result import FAILING_STATUSES, STATUSES, FileScan, ScanReport
from ckpttool.ops.scan.traps import tree_traps
from ckpttool.progress import ProgressSink

__all__ = ["FileScan", "ScanReport", "STATUSES", "FAILING_STATUSES", "scan_files", "scan_file"]


def _record_error(result: FileScan, exc: CkptError, where: str | None = None) -> None:
    """Keep the first read error; a reader limit is also the trap finding it stands for."""
    if exc.path is None:
        exc.path = result.path
    if result.error is None:
        result.error = exc
    if isinstance(exc, ResourceLimit):
        result.findings.append(Finding(exc.trap, "error", exc.message, where=where,
                                       hint="the reader stopped at its limit; the file asks for more "
                                            "than a file of its size can honestly need"))


def _add_archive_facts(result: FileScan, index: ZipIndex | None) -> None:
    if index is not None or result.path.is_file():
        facts = archive_facts(result.path, index)
        result.code_files = facts.code_files
        result.findings += facts.findings


def scan_file(path: Path) -> FileScan:
    """Scan one file; errors are recorded in the result, with the globals met before them."""
    result = FileScan(path=path)
    try:
        read = read_tree(path, keep_going=True)
    except CkptError as exc:
        _record_error(result, exc)
        _add_archive_facts(result, None)
        return result
    except (RecursionError, MemoryError, *READER_BUG_ERRORS) as exc:
        # a reader bug must not stop a multi-file scan, and an unread file is never clean
        result.error = reader_bug(path, exc)
        _add_archive_facts(result, None)
        return result
    result.format = read.format
    _add_archive_facts(result, read.zip_index)
    globals_, findings = pickle_findings(read.loads, read.tree)
    result.globals = globals_
    result.findings += findings
    result.findings += [Finding("format.anomaly", "warn", a) for a in read.anomalies]
    for load in read.loads:
        if load.error is not None:
            _record_error(result, load.error, load.where)
    values = {id(load.value): (load.where, load.value) for load in read.loads if load.value is not None}
    if not read.loads and read.tree is not None:
        values[id(read.tree)] = ("<root>", read.tree)
    result.findings += tree_traps(list(values.values()))
    return result


def _size(path: Path) -> int:
    """The bytes of a file, or of the files in a folder; 0 for what cannot be read."""
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def scan_files(paths: list[Path], jobs: int = 1, progress: ProgressSink | None = None) -> ScanReport:
    """Scan every path; with ``jobs`` > 1 over worker processes, under torchrun over the ranks.

    The report is the same, in the same order, however the files were spread. ``progress`` is told
    the bytes of all the files, then each file's bytes as it is done.
    """
    from ckpttool.parallel import ranks_from_env, run_split

    if (jobs <= 1 or len(paths) <= 1) and ranks_from_env() is None and progress is None:
        return ScanReport([scan_file(p) for p in paths])
    sizes = [_size(p) for p in paths]
    if progress is not None:
        progress.start(sum(sizes))
    return ScanReport(run_split(lambda i: scan_file(paths[i]), sizes, jobs if len(paths) > 1 else 1,
                                progress.advance if progress is not None else None))
