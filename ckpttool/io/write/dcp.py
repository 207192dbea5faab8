"""DCP folders written streaming, in the layout torch's ``FileSystemWriter`` produces.

The tree is flattened as ``dcp.save`` flattens it (``flatten``: dicts by ``str(key)``, lists only
when they hold tensors or dicts, tuples and other lists as one value). Each tensor becomes one
chunk covering it whole and each other value one item, appended to a data file
``__<n>_0.distcp`` as a ``torch.save`` archive written record by record from wherever the bytes
live, so memory is bounded by a chunk, not by a tensor or the model. ``.metadata`` (torch's own
data classes, pickled) is written last. Everything goes into a temporary folder beside the
target, is read back through ckpttool's DCP reader and compared tensor by tensor with the CRC-32
of what was written, then renamed into place; a failure leaves no partial output.

Tensors are spread over ``ceil(tensor bytes / file_bytes)`` data files (256 MiB each by default,
largest first to the lightest file); that depends only on the tree, never on how many processes
write the files, so the bytes of the folder are the same for any ``--jobs`` or torchrun world
size. The data files are the units of work: each is written, then read back and checked, by one
worker process or rank; the leader (this process, or rank 0) makes the temporary folder, writes
``.metadata`` from the gathered item records and renames the folder into place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.errors import CkptError, OutputRefused, VerificationFailed
from ckpttool.io.write.atomic import fsync_dir
from ckpttool.model import CHUNK_BYTES, Storage, TensorRef
from ckpttool.progress import ProgressSink, counted

if TYPE_CHECKING:
    from ckpttool.parallel.torchrun import Ranks
    from ckpttool.parallel.workers import Workers

__all__ = ["DcpEntry", "DcpWritten", "flatten", "plan_files", "files_for", "write_dcp_folder", "write_data_file",
           "write_metadata", "commit_folder", "temp_folder", "check_folder_target", "DCP_FILE_BYTES"]

Transform = Callable[[Any, Any], Any]
DCP_FILE_BYTES = 256 << 20  # tensor bytes per data file: the unit of parallel work


@dataclass
class DcpEntry:
    """One flattened value: its fqn, its path in the nested tree, and a ``TensorRef`` or plain value."""

    fqn: str
    path: tuple[Any, ...]
    value: Any

    @property
    def nbytes(self) -> int:
        return self.value.nbytes if isinstance(self.value, TensorRef) else 0


@dataclass
class ItemWritten:
    """Where one entry's item went, and the CRC-32 of the tensor bytes written (tensors only)."""

    fqn: str
    relative_path: str
    offset: int
    length: int
    crc: int | None = None


@dataclass
class DcpWritten:
    """What ``write_dcp_folder`` wrote."""

    path: Path
    files: list[str]
    tensors: int
    values: int
    nbytes: int
    items: list[ItemWritten] = field(default_factory=list)


def _is_tensor(value: Any) -> bool:
    from ckpttool.io.write.tensor_input import is_torch_tensor

    return isinstance(value, TensorRef) or is_torch_tensor(value)


def _terminal(value: Any) -> bool:
    """torch's ``_is_terminal``: a list is one value unless it holds a tensor, or a dict/list that is not."""
    if isinstance(value, dict):
        return False
    if not isinstance(value, list):
        return True
    for entry in value:
        if isinstance(entry, dict | list) and not _terminal(entry):
            return False
        if _is_tensor(entry):
            return False
    return True


def flatten(tree: dict[Any, Any], transform: Transform | None = None) -> list[DcpEntry]:
    """The entries ``dcp.save`` would make of ``tree`` (``transform(value, path)`` applied first)."""
    from ckpttool.io.write.tensor_input import TensorAdapter, is_torch_tensor

    adapt = TensorAdapter()
    out: list[DcpEntry] = []
    seen: set[str] = set()
    stack: list[tuple[tuple[Any, ...], Any]] = [((str(k),), v) for k, v in reversed(list(tree.items()))]
    while stack:
        path, value = stack.pop()
        if transform is not None:
            value = transform(value, path)
        if isinstance(value, dict):
            stack.extend(((*path, str(k)), v) for k, v in reversed(list(value.items())))
        elif _terminal(value):
            fqn = ".".join(map(str, path))
            if fqn in seen:
                raise OutputRefused(f"two entries flatten to the same DCP key {fqn!r}")
            seen.add(fqn)
            out.append(DcpEntry(fqn, path, adapt(value) if is_torch_tensor(value) else value))
        else:
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(value))))
    return out


def files_for(entries: Sequence[DcpEntry], file_bytes: int = DCP_FILE_BYTES) -> int:
    """How many data files: one per ``file_bytes`` of tensor bytes, at most one per tensor, at least one."""
    tensors = sum(isinstance(e.value, TensorRef) for e in entries)
    total = sum(e.nbytes for e in entries)
    return max(1, min(tensors, -(-total // max(1, file_bytes))))


def plan_files(entries: Sequence[DcpEntry], files: int) -> list[list[int]]:
    """Entries (by index) per data file: values round robin, tensors largest first to the lightest file."""
    files = max(1, files)
    bins: list[list[int]] = [[] for _ in range(files)]
    sizes = [0] * files
    values = [i for i, e in enumerate(entries) if not isinstance(e.value, TensorRef)]
    for n, i in enumerate(values):
        bins[n % files].append(i)
    tensors = sorted((i for i, e in enumerate(entries) if isinstance(e.value, TensorRef)),
                     key=lambda i: (-entries[i].nbytes, i))
    for i in tensors:
        b = min(range(files), key=lambda k: (sizes[k], k))
        bins[b].append(i)
        sizes[b] += entries[i].nbytes
    return [sorted(b) for b in bins]


class _FileSink:
    """Sequential writes to a descriptor with the zip record CRC; no whole-file hash (a folder has none)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0
        self._crc: int | None = None

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        if self._crc is not None:
            self._crc = zlib.crc32(view, self._crc)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.position += n

    def begin_crc(self) -> None:
        self._crc = 0

    def end_crc(self) -> int:
        crc, self._crc = self._crc or 0, None
        return crc


class _OffsetSink:
    """A sink whose positions count from where one item starts (a zip inside a bigger file)."""

    def __init__(self, sink: _FileSink) -> None:
        self.sink = sink
        self.base = sink.position

    @property
    def position(self) -> int:
        return self.sink.position - self.base

    def write(self, data: bytes | memoryview) -> None:
        self.sink.write(data)

    def begin_crc(self) -> None:
        self.sink.begin_crc()

    def end_crc(self) -> int:
        return self.sink.end_crc()


class _HashedBytes:
    """A ``ByteSource`` over one tensor's C-order bytes that takes their CRC-32 as they are written."""

    def __init__(self, ref: TensorRef, progress: ProgressSink | None = None) -> None:
        self.ref = ref
        self.progress = progress
        self.path = ref.storage.source.path if ref.storage.source is not None else Path("<tensor>")
        self.crc = 0

    def read(self, offset: int, length: int) -> bytes:
        return b"".join(self.chunks(offset, length))

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes | memoryview]:
        if offset != 0 or length != self.ref.nbytes:
            raise ValueError("a tensor item is written whole")
        for piece in counted(self.ref.chunks(chunk), self.progress):
            self.crc = zlib.crc32(piece, self.crc)
            yield piece


def _compact(ref: TensorRef, progress: ProgressSink | None = None) -> tuple[TensorRef, _HashedBytes]:
    """The tensor as torch.save would see it after DCP's clone: contiguous, its own storage, detached."""
    src = _HashedBytes(ref, progress)
    storage = Storage(key="0", dtype=ref.dtype, nbytes=ref.nbytes, location="cpu", source=src)
    from ckpttool.io.formats.dcp import contiguous_stride

    return TensorRef(ref.dtype, ref.shape, contiguous_stride(ref.shape), storage), src


def write_data_file(folder: Path, name: str, entries: Sequence[DcpEntry], on_item: Callable[[int], None] | None = None,
                    progress: ProgressSink | None = None) -> list[ItemWritten]:
    """Append each entry as one ``torch.save`` archive to ``folder/name``; fsynced before returning.

    ``progress`` is told each chunk of tensor bytes written (their total is the caller's to announce).
    """
    from ckpttool.io.write.torch_zip import write_torch

    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    sink = _FileSink(fd)
    out: list[ItemWritten] = []
    try:
        for e in entries:
            start = sink.position
            value = e.value
            digest = None
            if isinstance(value, TensorRef):
                compact, hashed = _compact(value, progress)
                write_torch(compact, _OffsetSink(sink), "archive")
                digest = hashed.crc
            else:
                write_torch(value, _OffsetSink(sink), "archive")
            out.append(ItemWritten(e.fqn, name, start, sink.position - start, digest))
            if on_item is not None:
                on_item(e.nbytes)
        os.fsync(fd)
    finally:
        os.close(fd)
    return out


def write_metadata(folder: Path, entries: Sequence[DcpEntry], items: Sequence[ItemWritten],
                   reused: dict[str, list[Any]] | None = None) -> None:
    """``.metadata`` as torch's ``FileSystemWriter`` pickles it (see ``dcp_metadata``), written last.

    ``reused`` maps an fqn to the chunks (``dcp_metadata.Chunk`` of the reader) it keeps from a linked folder.
    """
    from ckpttool.io.write.dcp_metadata import BytesRecord, TensorRecord, metadata_pickle

    where = {i.fqn: i for i in items}
    records: list[TensorRecord | BytesRecord] = []
    for e in entries:
        if reused and e.fqn in reused:
            records.append(TensorRecord(e.fqn, e.value.dtype, e.value.shape, [
                ((c.offsets, c.sizes), (c.item.relative_path, c.item.offset, c.item.length)) for c in reused[e.fqn]]))
            continue
        item = where[e.fqn]
        loc = (item.relative_path, item.offset, item.length)
        if isinstance(e.value, TensorRef):
            shape = tuple(e.value.shape)
            records.append(TensorRecord(e.fqn, e.value.dtype, shape, [(((0,) * len(shape), shape), loc)]))
        else:
            records.append(BytesRecord(e.fqn, loc))
    data = metadata_pickle(records, {e.fqn: e.path for e in entries})
    tmp = folder / ".metadata.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / ".metadata")


def check_folder_target(output: Path, inputs: Sequence[Path], force: bool) -> None:
    """Refuse an output folder that is, or holds, an input, that exists (without ``force``), or has no parent."""
    for src in inputs:
        with contextlib.suppress(OSError):
            s, o = Path(src).resolve(), output.resolve()
            if s == o or s.is_relative_to(o):
                raise OutputRefused("the output folder holds an input", path=output)
    if output.exists() and not force:
        raise OutputRefused("the output exists", hint="pass --force to replace it", path=output)
    if output.is_dir() and not (output / ".metadata").is_file() and any(output.iterdir()):
        # replacing removes the whole folder: only ever a DCP checkpoint, never a folder of other files
        raise OutputRefused("the output is a folder that is not a DCP checkpoint; --force replaces only those",
                            hint="name a new folder", path=output)
    if not output.parent.is_dir():
        raise OutputRefused("the output folder's parent does not exist", path=output)


def temp_folder(output: Path) -> Path:
    """A fresh temporary folder beside ``output``."""
    tmp = output.parent / f".{output.name}.{os.getpid()}-{secrets.token_hex(4)}.ckpttool-tmp"
    try:
        tmp.mkdir()
    except OSError as exc:
        raise OutputRefused(f"cannot create a folder in {output.parent}: {exc.strerror or exc}", path=output) from None
    return tmp


def commit_folder(tmp: Path, output: Path) -> None:
    """Rename the verified ``tmp`` to ``output`` (an existing output is moved away first, then removed)."""
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.{os.getpid()}-{secrets.token_hex(4)}.ckpttool-old"
        output.rename(old)
    try:
        tmp.rename(output)
    except OSError as exc:
        if old is not None:
            old.rename(output)
        raise OutputRefused(f"cannot move the written folder into place: {exc.strerror or exc}", path=output) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(output.parent)


def verify_folder(folder: Path, entries: Sequence[DcpEntry], items: Sequence[ItemWritten],
                  reused: dict[str, list[Any]] | None = None, progress: ProgressSink | None = None) -> None:
    """Read ``folder`` back through ckpttool's reader: every entry there, every tensor's bytes as written."""
    verify_entries(folder, entries, reused)
    verify_items(folder, items, progress)


def _read_back(folder: Path) -> Any:
    from ckpttool.io.formats.dcp_metadata import read_metadata

    try:
        return read_metadata(folder)
    except CkptError as exc:
        raise VerificationFailed(f"the DCP folder does not read back: {exc.message}", path=folder) from None


def verify_entries(folder: Path, entries: Sequence[DcpEntry], reused: dict[str, list[Any]] | None = None) -> None:
    """``.metadata`` reads back with every entry written, and linked tensors keep their chunks."""
    from ckpttool.io.formats.dcp_metadata import TensorEntry

    meta = _read_back(folder)
    if list(meta.entries) != [e.fqn for e in entries]:
        raise VerificationFailed("the DCP folder does not hold the entries written", path=folder)
    for fqn, chunks in (reused or {}).items():
        got = meta.entries[fqn]
        if not isinstance(got, TensorEntry) or got.chunks != chunks:
            raise VerificationFailed(f"DCP tensor {fqn!r} does not keep its chunks", path=folder)


def verify_items(folder: Path, items: Sequence[ItemWritten], progress: ProgressSink | None = None) -> None:
    """Each tensor of ``items`` reads back (through ``.metadata``) with the CRC-32 of what was written."""
    from ckpttool.io.formats.dcp import DataFiles, tensor_ref
    from ckpttool.io.formats.dcp_metadata import TensorEntry

    meta = _read_back(folder)
    files = DataFiles(folder)
    try:
        for item in items:
            entry = meta.entries[item.fqn]
            if item.crc is None:
                continue
            if not isinstance(entry, TensorEntry):
                raise VerificationFailed(f"DCP entry {item.fqn!r} is not a tensor", path=folder)
            crc = 0
            for piece in counted(tensor_ref(meta, files, entry).chunks(), progress):
                crc = zlib.crc32(piece, crc)
            if crc != item.crc:
                raise VerificationFailed(f"DCP tensor {item.fqn!r} did not read back as written", path=folder)
    except CkptError as exc:
        if isinstance(exc, VerificationFailed):
            raise
        raise VerificationFailed(f"the DCP folder does not read back: {exc.message}", path=folder) from None
    finally:
        files.close()


def _reusable(entries: Sequence[DcpEntry], source: Any) -> dict[str, list[Any]]:
    """Tensors that are, unchanged, tensors of the linked folder ``source``: their chunks, by fqn."""
    from ckpttool.io.formats.dcp import DcpSource

    out: dict[str, list[Any]] = {}
    for e in entries:
        v = e.value
        src = v.storage.source if isinstance(v, TensorRef) else None
        if isinstance(src, DcpSource) and src.meta is source and v.storage_offset == 0 and v.is_contiguous \
                and v.shape == src.entry.shape and v.dtype == src.entry.dtype:
            out[e.fqn] = src.entry.chunks
    return out


def _link(source: Path, name: str, tmp: Path) -> None:
    try:
        os.link(source / name, tmp / name)
    except OSError:
        shutil.copyfile(source / name, tmp / name)


def _first_free(names: set[str]) -> int:
    import re

    taken = [int(m.group(1)) for n in names if (m := re.match(r"__(\d+)_\d+\.distcp$", n))]
    return max(taken, default=-1) + 1


def write_dcp_folder(tree: dict[Any, Any], output: Path, *, inputs: Sequence[Path] = (), force: bool = False,
                     files: int | None = None, file_bytes: int = DCP_FILE_BYTES, transform: Transform | None = None,
                     link_from: Any = None, jobs: int = 1, ranks: Ranks | None = None,
                     progress: ProgressSink | None = None) -> DcpWritten:
    """Write ``tree`` as a DCP folder at ``output`` (see the module docstring).

    ``files`` fixes the number of data files (else ``files_for(file_bytes)``); ``jobs`` worker processes
    write them, and ``ranks`` (a torchrun group, not yet started) splits them over its ranks.
    ``link_from`` (the ``DcpMetadata`` of an input folder): tensors that are that folder's, unchanged,
    keep their chunks, and its data files are hard-linked (copied across file systems) rather than
    rewritten; only the rest goes into new data files (``remap`` renames keys this way).
    ``progress`` is told the tensor bytes to write and read back, then each chunk of both passes.
    """
    from ckpttool.parallel.workers import Workers

    if ranks is None:
        return _write_folder(tree, output, inputs, force, files, file_bytes, transform, link_from, Workers(jobs),
                             progress)
    with ranks:
        return _write_folder(tree, output, inputs, force, files, file_bytes, transform, link_from,
                             Workers(jobs, ranks), progress)


def _write_folder(tree: dict[Any, Any], output: Path, inputs: Sequence[Path], force: bool, files: int | None,
                  file_bytes: int, transform: Transform | None, link_from: Any, workers: Workers,
                  progress: ProgressSink | None) -> DcpWritten:
    from ckpttool.parallel.relay import Relay

    check_folder_target(output, inputs, force)
    entries = flatten(tree, transform)
    reused = _reusable(entries, link_from) if link_from is not None else {}
    fresh = [e for e in entries if e.fqn not in reused]
    plan = plan_files(fresh, files if files is not None else files_for(fresh, file_bytes)) if fresh else []
    linked = sorted({c.item.relative_path for chunks in reused.values() for c in chunks})
    first = _first_free(set(linked))
    names = [f"__{first + n}_0.distcp" for n in range(len(plan))]
    sizes = [sum(fresh[i].nbytes for i in idx) for idx in plan]
    relay = Relay(progress) if progress is not None else None
    if progress is not None:  # written and read back: twice this process's (this rank's) share
        progress.start(2 * sum(sizes[n] for n in workers.share(sizes)))

    def prepare() -> Path:
        tmp = temp_folder(output)
        try:
            for name in linked:
                _link(link_from.folder, name, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp

    def index() -> None:
        write_metadata(tmp, entries, items, reused)
        verify_entries(tmp, entries, reused)

    def publish() -> None:
        fsync_dir(tmp)
        commit_folder(tmp, output)

    tmp = workers.leader(prepare)
    try:
        per_file = workers.run(lambda n: write_data_file(tmp, names[n], [fresh[i] for i in plan[n]], progress=relay),
                               sizes, relay)
        items = [item for part in per_file for item in part]
        workers.leader(index)
        workers.run(lambda n: verify_items(tmp, per_file[n], relay), sizes, relay)
        workers.leader(publish)
    finally:
        if workers.is_leader:
            shutil.rmtree(tmp, ignore_errors=True)
        workers.barrier()  # no rank ends (torchrun then stops the rest) before the leader has cleaned up
    nbytes = sum(p.stat().st_size for p in output.iterdir() if p.is_file())
    return DcpWritten(output, linked + names, len(reused) + sum(i.crc is not None for i in items),
                      sum(i.crc is None for i in items), nbytes, items)
