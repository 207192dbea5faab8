"""A fast path for large ``.metadata`` files: the C unpickler, in a child process, DCP classes only.

A run on hundreds of ranks writes ``.metadata`` with hundreds of thousands of chunk entries (about
8 million pickle opcodes per 100k entries); the safe VM steps through them several times slower
than torch's own ``read_metadata()``, which uses the C ``pickle``. This path runs that same C
unpickler (so it sees exactly the globals torch's reader would), with ``find_class`` answering only
the data classes DCP writes (as inert records) and the handful of plain globals it pickles with
them. Anything else, any error, a crash (the C unpickler cannot be protected from the
deep-tuple segfault) or a memory cap hit in the child, and the caller falls back to the safe VM,
which reports what it finds the usual way. The child hands back plain tuples through ``marshal``.
"""

from __future__ import annotations

import contextlib
import io
import marshal
import os
import pickle
from collections import Counter
from typing import Any

from ckpttool.io.formats.dcp_metadata import DCP_CLASSES

__all__ = ["fast_plain", "Plain"]

# (version, planner paths, entries, globals): a tensor entry is (fqn, kind, dtype, shape, [(offsets, sizes,
# storage)]), any other (fqn, kind, None, None, storage); storage is (relative path, offset, length,
# transforms) or None; globals are (module, name, count).
Plain = tuple[Any, dict[str, Any], list[Any], list[tuple[str, str, int]]]
_MIN_BYTES = 1 << 20  # smaller files are quicker through the safe VM than through a child process


class _Foreign(Exception):
    """A global outside what DCP writes: leave this file to the safe VM."""


class _Rec:
    """An inert stand-in for one DCP data class instance; ``BUILD`` fills its ``__dict__`` (in C)."""

    name = ""

    def __init__(self, *args: Any) -> None:
        self.args = args


class _TupleState(_Rec):
    """``TensorProperties`` pickles its state as a tuple (dtype first)."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Dtype(str):
    """``torch.float32`` and friends, as the dtype's name."""


_BUILTINS: dict[str, Any] = {"builtins.set": set, "builtins.frozenset": frozenset, "builtins.tuple": tuple,
                             "builtins.list": list, "builtins.dict": dict, "builtins.int": int}


def _path(*parts: Any) -> str:
    """A pickled ``pathlib`` path (``StorageMeta.checkpoint_id``), as text."""
    return "/".join(str(p) for p in parts)


def _find(module: str, name: str, seen: Counter[tuple[str, str]]) -> Any:
    seen[(module, name)] += 1
    if name in DCP_CLASSES.get(module, ()):
        return type(name, (_TupleState if name == "TensorProperties" else _Rec,), {"name": name})
    full = f"{module}.{name}"
    if full == "torch.Size":
        return tuple
    if full == "torch.serialization._get_layout":
        return str
    if full == "collections.OrderedDict":
        return dict
    if full in _BUILTINS:
        return _BUILTINS[full]
    if module == "pathlib" and name in ("Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"):
        return _path
    if module == "torch":
        from ckpttool.dtypes import by_name

        if by_name(name) is not None:
            return _Dtype(name)
    raise _Foreign(full)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.seen: Counter[tuple[str, str]] = Counter()

    def find_class(self, module: str, name: str) -> Any:
        return _find(module, name, self.seen)

    def persistent_load(self, pid: Any) -> Any:
        raise _Foreign("persistent id")


def _state(obj: Any) -> dict[str, Any]:
    if isinstance(obj, _Rec):
        return obj.__dict__
    raise _Foreign("not a record")


def _ints(v: Any) -> tuple[int, ...] | None:
    return tuple(v) if isinstance(v, tuple | list) and all(type(x) is int for x in v) else None


def _plain(md: Any, budget: int) -> tuple[Any, dict[str, Any], list[Any]]:
    st = _state(md)
    sdm, sd = st.get("state_dict_metadata"), st.get("storage_data")
    planner = st.get("planner_data") or {}
    if not isinstance(sdm, dict) or not isinstance(sd, dict) or not isinstance(planner, dict):
        raise _Foreign("not a Metadata")
    storage: dict[tuple[Any, Any], tuple[Any, ...]] = {}
    for key, info in sd.items():
        k, v = _state(key), _state(info)
        offset = k.get("offset")
        storage[(k.get("fqn"), None if offset is None else _ints(offset))] = (
            v.get("relative_path"), v.get("offset"), v.get("length"), v.get("transform_descriptors"))
    entries: list[Any] = []
    for fqn, item in sdm.items():
        if not isinstance(item, _Rec):
            raise _Foreign("entry")
        if item.name != "TensorStorageMetadata":
            entries.append((fqn, item.name, None, None, storage.get((fqn, None))))
            continue
        s = _state(item)
        props = s.get("properties")
        pstate = getattr(props, "state", None) if isinstance(props, _Rec) else None
        if pstate is None and isinstance(props, _Rec):
            pstate = props.__dict__
        dtype = pstate[0] if isinstance(pstate, tuple) and pstate else \
            (pstate.get("dtype") if isinstance(pstate, dict) else None)
        chunks = []
        for c in s.get("chunks") or ():
            cs = _state(c)
            offsets = _ints(cs.get("offsets"))
            chunks.append((offsets, _ints(cs.get("sizes")), storage.get((fqn, offsets))))
        budget -= len(chunks) + 1
        if budget < 0:
            raise _Foreign("more chunks than the file has room for")
        entries.append((fqn, item.name, str(dtype) if isinstance(dtype, _Dtype) else None, _ints(s.get("size")),
                        chunks))
    paths = {k: (tuple(p) if isinstance(p, list) else p) for k, p in planner.items()}
    return st.get("version"), paths, entries


def _child(data: bytes, w: int) -> None:
    with contextlib.suppress(Exception):
        import resource

        cap = 16 * len(data) + (1 << 30)
        with open("/proc/self/statm") as f:
            cap += int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    code = 3
    try:
        u = _Unpickler(data)
        md = u.load()
        out = (*_plain(md, len(data) // 8), [(m, n, c) for (m, n), c in u.seen.items()])
        blob = marshal.dumps(out)
        view = memoryview(blob)
        while view:
            view = view[os.write(w, view):]
        code = 0
    except BaseException:  # noqa: BLE001 - anything at all: the parent falls back to the safe VM
        code = 3
    finally:
        os._exit(code)


def fast_plain(data: bytes) -> Plain | None:
    """``.metadata`` as plain tuples through the C unpickler in a child, or None to use the safe VM."""
    if len(data) < _MIN_BYTES or not hasattr(os, "fork") or os.environ.get("CKPTTOOL_SAFE_VM_ONLY"):
        return None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        _child(data, w)
    os.close(w)
    parts: list[bytes] = []
    try:
        while True:
            piece = os.read(r, 1 << 22)
            if not piece:
                break
            parts.append(piece)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    try:
        out = marshal.loads(b"".join(parts))
    except (ValueError, EOFError, TypeError):
        return None
    return out  # type: ignore[no-any-return]
