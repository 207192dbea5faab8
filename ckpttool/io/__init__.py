"""Turning a path into a ``Checkpoint``, whatever the format, without running code from it.

``open_checkpoint`` sniffs the format from the bytes, runs every pickle through the safe VM,
locates tensors lazily, recognises the layout, and attaches findings (dangerous globals, a file
extension that lies about the format, zip anomalies). Only ``CkptError`` escapes it.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, ResourceLimit, UnreadableCheckpoint, UnsupportedFormat
from ckpttool.io.formats.safetensors import read_safetensors
from ckpttool.io.formats.sniff import extension_format, sniff
from ckpttool.io.pickle.findings import pickle_findings
from ckpttool.io.pickle.gc_pause import paused_gc
from ckpttool.io.pickle.run import PickleLoad, run_pickle
from ckpttool.io.source import FileSource
from ckpttool.model import Checkpoint, Finding

__all__ = ["open_checkpoint", "read_tree", "TreeRead", "READER_BUG_ERRORS", "reader_bug", "code_findings"]


class TreeRead:
    """The raw result of reading a file: the object tree and every pickle's outcome."""

    def __init__(self, path: Path, fmt: str, tree: Any, size: int, loads: list[PickleLoad],
                 anomalies: list[str], script: Any = None, members: dict[str, Any] | None = None) -> None:
        self.path, self.format, self.tree, self.size = path, fmt, tree, size
        self.loads, self.anomalies, self.script = loads, anomalies, script
        self.members = members or {}
        self.zip_index: Any = None  # a zip archive's directory, for checks that need only it


def _check_path(path: Path) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UnreadableCheckpoint("no such file", path=path) from None
    except OSError as exc:
        raise UnreadableCheckpoint(f"cannot open: {exc.strerror or exc}", path=path) from None
    if path.is_dir():
        raise UnsupportedFormat("is a directory, not a checkpoint file", path=path)
    if not path.is_file():
        raise UnreadableCheckpoint("not a regular file", path=path)
    if path.suffix == ".distcp" and (path.parent / ".metadata").is_file():  # not a corrupt zip: one piece of many
        raise UnsupportedFormat("is one data file of a torch.distributed.checkpoint folder",
                                path=path, hint=f"pass the folder: {path.parent}")
    if st.st_size == 0:
        raise UnreadableCheckpoint("the file is empty", path=path)
    if not os.access(path, os.R_OK):
        raise UnreadableCheckpoint("permission denied", path=path)
    return st.st_size


def read_tree(path: Path, *, keep_going: bool = False) -> TreeRead:
    """Read ``path`` into an object tree. ``keep_going`` keeps partial results of bad pickles."""
    # Multi-file checkpoints (shard indexes, DCP and HF Trainer folders): see io/formats/folders.py.
    from ckpttool.io.formats.folders import read_folder

    folder = read_folder(path)
    if folder is not None:
        return folder
    size = _check_path(path)
    file = FileSource(path, size)
    fmt = sniff(file.read(0, min(size, 512)), size)
    if fmt == "pickle":
        data = file.read(0, size)
        load = run_pickle(data, "pickle", None, keep_going=keep_going)
        if load.error is not None or not _is_legacy_magic(load.value):
            return TreeRead(path, fmt, load.value, size, [load, *_trailing_pickles(data, load.end)],
                            [f"{size - load.end} bytes follow the pickle's STOP"] if load.end < size else [])
        fmt = "torch-legacy"  # torch.load reads a stream whose first pickle is the magic number as legacy
    if fmt == "torch-zip":
        from ckpttool.io.formats.pt2 import is_pt2, read_pt2
        from ckpttool.io.formats.torch_zip import read_torch_zip
        from ckpttool.io.formats.zip_index import read_zip_index

        index = read_zip_index(path, file)
        if is_pt2(index):
            pt2 = read_pt2(path, index, keep_going=keep_going)
            read = TreeRead(path, "torch-export", pt2.tree, size, pt2.loads, pt2.anomalies, members=pt2.members)
            read.zip_index = index
            return read
        from ckpttool.io.formats.torchscript import script_class_info

        z = read_torch_zip(path, file, keep_going=keep_going, index=index)
        script = script_class_info(z.index, z.root) if z.format == "torchscript" else None
        members: dict[str, Any] = dict(z.info)
        if script is not None:  # the code members, as for torch.export archives (members["code"])
            members["code"] = [n for n in z.index.entries if n.startswith(f"{z.root}/code/") and n.endswith(".py")]
        read = TreeRead(path, z.format, z.tree, size, z.loads, z.index.anomalies, script, members)
        read.zip_index = z.index
        return read
    if fmt == "torch-legacy":
        from ckpttool.io.formats.torch_legacy import read_torch_legacy

        tree, loads, modules = read_torch_legacy(path, file, keep_going=keep_going)
        anomalies = [f"legacy module record for {name} embeds the source file path {src!r}"
                     for name, src in modules if src]
        return TreeRead(path, fmt, tree, size, loads, anomalies)
    if fmt == "safetensors":
        tensors, metadata = read_safetensors(path, file)
        return TreeRead(path, fmt, tensors, size, [], [], members={"__metadata__": metadata})
    if fmt == "torch-tar":
        from ckpttool.io.formats.torch_tar import read_torch_tar

        tree, loads, modules = read_torch_tar(path, file, keep_going=keep_going)
        anomalies = [f"legacy module record for {name} embeds the source file path {src!r}"
                     for name, src in modules if src]
        return TreeRead(path, fmt, tree, size, loads, anomalies)
    raise UnreadableCheckpoint("not a checkpoint: unrecognised bytes (not a torch zip, legacy "
                               "torch file, safetensors or pickle)", path=path)


def _is_legacy_magic(value: Any) -> bool:
    from ckpttool.io.formats.torch_legacy import MAGIC_NUMBER

    return type(value) is int and value == MAGIC_NUMBER


def _trailing_pickles(data: bytes, pos: int, limit: int = 16) -> list[PickleLoad]:
    """Pickles after the first one's STOP: no loader of a plain pickle reads them, but a tool that
    reads a stream of pickles would, so their globals are reported (a parse failure is not an error)."""
    loads: list[PickleLoad] = []
    while pos < len(data) and data[pos] == 0x80 and len(loads) < limit:
        load = run_pickle(data, f"pickle {len(loads) + 2} (after the first STOP)", None, start=pos, keep_going=True)
        if load.error is not None:
            load.anomalies.append(f"not a pickle ({load.error.message})")
            load.error = None
            loads.append(load)
            break
        loads.append(load)
        pos = load.end
    return loads


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open ``path`` safely and recognise its layout.

    Raises:
        CkptError: for anything wrong with the file (only ``CkptError`` subclasses escape).
    """
    path = Path(path)
    try:
        with paused_gc():  # everything read stays alive: collections would only walk it again and again
            read = read_tree(path)
            ckpt = _checkpoint(read)
    except CkptError as exc:
        if exc.path is None:
            exc.path = path
        raise
    except RecursionError:
        raise ResourceLimit("the object tree nests too deeply", path=path) from None
    except MemoryError:
        raise ResourceLimit("reading needs more memory than is available", path=path) from None
    except READER_BUG_ERRORS as exc:
        # A reader bug met on a malformed file: still an error about the file, never a traceback.
        # (The fuzz harness and tests call read_tree/_checkpoint directly, so bugs stay visible.)
        raise reader_bug(path, exc) from exc
    return ckpt


# What a reader bug on a malformed file can raise; callers turn it into an error about the file.
READER_BUG_ERRORS = (ValueError, TypeError, LookupError, ArithmeticError, AttributeError, OSError,
                     struct.error, zlib.error)


def reader_bug(path: Path, exc: BaseException) -> UnreadableCheckpoint:
    """The one-line error for an unexpected exception while reading ``path``."""
    return UnreadableCheckpoint(f"the file could not be parsed ({type(exc).__name__})", path=path,
                                hint="if the file is valid, please report this as a ckpttool bug")


def _checkpoint(read: TreeRead) -> Checkpoint:
    from ckpttool.layouts import recognise

    ckpt = Checkpoint(path=read.path, format=read.format, tree=read.tree, file_size=read.size,
                      members=read.members)
    globals_, findings = pickle_findings(read.loads, read.tree)
    ckpt.globals = globals_
    ckpt.findings.extend(findings)
    ckpt.findings.extend(Finding("format.anomaly", "warn", a) for a in read.anomalies)
    claimed = extension_format(read.path)
    actual = "safetensors" if read.format == "safetensors" else "pickle" if read.format == "pickle" else "torch"
    if claimed is not None and claimed != actual and not (claimed == "pickle" and actual == "torch"):
        ckpt.findings.append(Finding(
            "format.extension-mismatch", "warn",
            f"the extension {read.path.suffix!r} says {claimed} but the bytes are {read.format}; "
            "read by its bytes"))
    ckpt.findings.extend(code_findings(read))
    recognise(ckpt, read.script)
    from ckpttool.io.tensor_findings import tensor_findings

    ckpt.findings.extend(tensor_findings(read.tree))
    return ckpt


def code_findings(read: TreeRead) -> list[Finding]:
    """A ``format.code`` finding for an archive that carries code (TorchScript, torch.export graphs)."""
    code = read.members.get("code") or []
    if not code:
        return []
    what = "the exported graph" if read.format == "torch-export" else "TorchScript code"
    shown = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
    return [Finding("format.code", "warn",
                    f"{what} in {len(code)} member(s) ({shown}) would be compiled and run by torch's "
                    "loader; ckpttool reads the tensors only and never loads it")]


