"""``torch.distributed.checkpoint`` folders (``.metadata`` + ``*.distcp``), as FSDP/DTensor training writes them.

Reading has two halves, on purpose:
- the structure comes from ``.metadata`` through ckpttool's safe unpickler (no torch import): every
  tensor's dtype and global shape, every non-tensor entry, nested back into the original tree
  with the planner's paths. ``inspect``/``scan`` need nothing more.
- tensor bytes and non-tensor values come from torch's own DCP reader (``dcp.load`` into an empty
  tensor of the global shape), one tensor at a time, when a command asks for them: ckpttool has
  no shard-stitching logic of its own. Only one loaded tensor is cached.

torch's DCP reader is not a safe reader: it unpickles ``.metadata`` with the full ``pickle`` and
loads non-tensor entries with ``torch.load(weights_only=False)``. So before ckpttool lets it near a
folder, ``check_loadable`` requires that ``.metadata`` (already read by the safe VM) names only the
classes DCP itself writes (``UnsafeContent`` otherwise), and the non-tensor entries are loaded
through a planner that uses ``weights_only=True``.

Writing a folder (``write_dcp``) goes through ``dcp.save`` into a temporary folder beside the
target, verified by reading it back, then renamed; it holds the tensors in memory (DCP saves one
state_dict in one call).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, OutputRefused, ResourceLimit, UnreadableCheckpoint, VerificationFailed
from ckpttool.io.pickle.rebuild import dtype_of_global
from ckpttool.model import CHUNK_BYTES, PickledDict, Storage, Stub, TensorRef

__all__ = ["read_dcp", "DcpSource", "load_dcp_values", "write_dcp", "check_loadable", "BYTES_ITEM",
           "MAX_METADATA"]

MAX_METADATA = 1 << 30
BYTES_ITEM = "torch.distributed.checkpoint.metadata.BytesStorageMetadata"
_CACHE: dict[str, Any] = {}


def _quiet_dcp() -> Any:
    import torch.distributed.checkpoint as dcp

    return dcp


_DCP_GLOBALS = {"torch.serialization._get_layout", "torch.Size", "torch.device", "collections.OrderedDict",
                "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath",
                "pathlib.PureWindowsPath", "builtins.set", "builtins.frozenset", "copyreg._reconstructor",
                "builtins.object", "builtins.tuple", "builtins.list", "builtins.dict", "builtins.int"}
_CHECKED: set[str] = set()


_DCP_CLASSES = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "TensorStorageMetadata", "BytesStorageMetadata",
                                              "TensorProperties", "ChunkStorageMetadata", "MetadataIndex",
                                              "StorageMeta", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
}


def _allowed(module: str, name: str) -> bool:
    """The data classes DCP pickles into ``.metadata`` (never a function it could be made to call)."""
    from ckpttool.dtypes import by_name

    if name in _DCP_CLASSES.get(module, ()):
        return True
    return f"{module}.{name}" in _DCP_GLOBALS or (module == "torch" and by_name(name) is not None)


def check_loadable(folder: Path) -> None:
    """Refuse to hand ``folder`` to torch's DCP reader unless ``.metadata`` names only DCP's own classes."""
    st = (folder / ".metadata").stat()
    key = f"{folder.resolve()}\0{st.st_mtime_ns}\0{st.st_size}"
    if key in _CHECKED:
        return
    from ckpttool.errors import UnsafeContent

    _, load = _entries(folder)
    bad = sorted(f"{m}.{n}" for (m, n) in load.globals if not _allowed(m, n))
    if bad:
        raise UnsafeContent(f"DCP .metadata references {', '.join(bad[:5])}: torch's DCP reader would unpickle "
                            "it with the full pickle, so ckpttool will not pass it the folder", path=folder,
                            hint="inspect/scan it; load it only if you trust where it came from")
    _CHECKED.add(key)


def _planner() -> Any:
    """DCP's default load planner, but non-tensor entries are loaded with ``weights_only=True``."""
    import torch
    from torch.distributed.checkpoint._traverse import set_element
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    class WeightsOnlyLoadPlanner(DefaultLoadPlanner):
        def load_bytes(self, read_item: Any, value: Any) -> None:
            obj = torch.load(value, weights_only=True)
            if self.flatten_state_dict:
                set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
            else:
                self.state_dict[read_item.dest_index.fqn] = obj

    return WeightsOnlyLoadPlanner()


def _load(state: dict[str, Any], folder: Path) -> None:
    """``dcp.load`` into ``state``, after ``check_loadable``, with warnings silenced."""
    check_loadable(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _quiet_dcp().load(state, checkpoint_id=folder, planner=_planner(), no_dist=True)


class DcpSource:
    """The bytes of one DCP tensor, loaded whole through ``torch.distributed.checkpoint`` on first read."""

    def __init__(self, folder: Path, fqn: str, dtype: str, shape: tuple[int, ...]) -> None:
        self.path = folder
        self.fqn, self.dtype, self.shape = fqn, dtype, shape

    def _data(self) -> memoryview:
        key = f"{self.path}\0{self.fqn}"
        if _CACHE.get("key") != key:
            import torch

            _CACHE.clear()
            t = torch.empty(self.shape, dtype=getattr(torch, self.dtype))
            try:
                _load({self.fqn: t}, self.path)
            except CkptError:
                raise
            except Exception as exc:  # noqa: BLE001 - torch's reader raises anything on a bad folder
                raise UnreadableCheckpoint(f"torch could not read tensor {self.fqn!r}: {exc}",
                                           path=self.path) from None
            _CACHE.update(key=key, data=memoryview(t.reshape(-1).view(torch.uint8).numpy()), tensor=t)
        return _CACHE["data"]

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self._data()[offset:offset + length])

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes | memoryview]:
        data = self._data()
        end = offset + length
        while offset < end:
            n = min(chunk, end - offset)
            yield data[offset:offset + n]
            offset += n


def _tensor(folder: Path, fqn: str, meta: Stub) -> TensorRef | None:
    attrs = meta.attributes
    props = attrs.get("properties")
    state = props.state if isinstance(props, Stub) else None
    dtype = None
    if isinstance(state, tuple) and state:
        dtype = dtype_of_global(state[0])
    elif isinstance(props, Stub):
        dtype = dtype_of_global(props.attributes.get("dtype"))
    size = attrs.get("size")
    if dtype is None or not isinstance(size, tuple | list) or not all(type(s) is int and s >= 0 for s in size):
        return None
    from ckpttool.dtypes import by_name

    shape = tuple(size)
    numel = 1
    for s in shape:
        numel *= s
    nbytes = numel * by_name(dtype).itemsize  # type: ignore[union-attr]
    storage = Storage(key=fqn, dtype=dtype, nbytes=nbytes, location="cpu",
                      source=DcpSource(folder, fqn, dtype, shape))
    stride: list[int] = []
    acc = 1
    for s in reversed(shape):
        stride.append(acc)
        acc *= s
    return TensorRef(dtype=dtype, shape=shape, stride=tuple(reversed(stride)), storage=storage)


def _place(root: PickledDict, path: tuple[Any, ...], value: Any) -> None:
    node: Any = root
    for key in path[:-1]:
        nxt = node.get(key) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            nxt = PickledDict()
            node[key] = nxt
        node = nxt
    node[path[-1]] = value


def _listify(root: PickledDict) -> PickledDict:
    """Dicts whose keys are exactly the ints 0..n-1 (``param_groups``) become lists again."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        for key, value in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(value, dict):
                if value and all(type(k) is int for k in value) and sorted(value) == list(range(len(value))):
                    value = [value[i] for i in range(len(value))]
                    node[key] = value
                stack.append(value)
    return root


def _entries(folder: Path) -> tuple[dict[str, tuple[tuple[Any, ...], Any]], Any]:
    """fqn → (planner path, TensorRef or bytes-item stub), and the pickle load, from ``.metadata``."""
    from ckpttool.io.pickle.run import run_pickle

    meta_path = folder / ".metadata"
    size = meta_path.stat().st_size
    if size > MAX_METADATA:
        raise ResourceLimit(f".metadata is {size} bytes", path=meta_path)
    load = run_pickle(meta_path.read_bytes(), ".metadata", None)
    md = load.value
    attrs = md.attributes if isinstance(md, Stub) else {}
    sdm = attrs.get("state_dict_metadata")
    if not isinstance(sdm, dict):
        raise UnreadableCheckpoint("DCP .metadata has no state_dict_metadata", path=meta_path)
    planner = attrs.get("planner_data") if isinstance(attrs.get("planner_data"), dict) else {}
    out: dict[str, tuple[tuple[Any, ...], Any]] = {}
    for fqn, item in sdm.items():
        if not isinstance(fqn, str) or not isinstance(item, Stub):
            raise UnreadableCheckpoint("DCP .metadata has a malformed entry", path=meta_path)
        path = planner.get(fqn)
        path = tuple(path) if isinstance(path, tuple | list) and path else (fqn,)
        if item.qualname.endswith("TensorStorageMetadata"):
            value: Any = _tensor(folder, fqn, item)
            if value is None:
                raise UnreadableCheckpoint(f"DCP tensor {fqn!r} has no readable dtype/size", path=meta_path)
        else:
            value = Stub(BYTES_ITEM, (fqn,))
        out[fqn] = (path, value)
    return out, load


def read_dcp(folder: Path) -> Any:
    """The tree of a DCP folder, from ``.metadata`` alone (see the module docstring)."""
    from ckpttool.io import TreeRead

    entries, load = _entries(folder)
    tree = PickledDict(ordered=True)
    for path, value in entries.values():
        _place(tree, path, value)
    values = [fqn for fqn, (_, v) in entries.items() if isinstance(v, Stub)]
    files = [p for p in folder.iterdir() if p.is_file()]
    return TreeRead(folder, "dcp", _listify(tree), sum(p.stat().st_size for p in files), [load], [],
                    members={"dcp_values": values})


def load_dcp_values(folder: Path, fqns: list[str]) -> dict[str, Any]:
    """The non-tensor entries of a DCP folder, through torch's reader (which loads them weights_only)."""
    if not fqns:
        return {}
    out: dict[str, Any] = dict.fromkeys(fqns)
    try:
        _load(out, folder)
    except CkptError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch's reader raises anything on a bad folder
        raise UnreadableCheckpoint(f"torch could not read the DCP values: {exc}", path=folder) from None
    return out


def write_dcp(state: dict[str, Any], output: Path, *, inputs: tuple[Path, ...] = (), force: bool = False) -> int:
    """Save ``state`` (torch tensors and plain values) as a DCP folder at ``output``; returns its size."""
    from ckpttool.io.write.atomic import fsync_dir

    for src in inputs:
        with contextlib.suppress(OSError):
            if output.resolve() == Path(src).resolve() or Path(src).resolve().is_relative_to(output.resolve()):
                raise OutputRefused("the output folder holds an input", path=output)
    if output.exists() and not force:
        raise OutputRefused("the output exists", hint="pass --force to replace it", path=output)
    if not output.parent.is_dir():
        raise OutputRefused("the output folder's parent does not exist", path=output)
    tmp = output.parent / f".{output.name}.{secrets.token_hex(4)}.ckpttool-tmp"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _quiet_dcp().save(state, checkpoint_id=tmp, no_dist=True)
        _verify(tmp, state)
        if output.exists():
            old = output.parent / f".{output.name}.{secrets.token_hex(4)}.ckpttool-old"
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output)
        fsync_dir(output.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sum(p.stat().st_size for p in output.iterdir() if p.is_file())


def _verify(folder: Path, state: dict[str, Any]) -> None:
    import torch
    from torch.distributed.checkpoint._nested_dict import flatten_state_dict

    flat, _ = flatten_state_dict(state)
    try:
        got, _ = _entries(folder)
    except CkptError as exc:
        raise VerificationFailed(f"the DCP folder does not read back: {exc.message}", path=folder) from None
    if set(got) != set(flat):
        raise VerificationFailed("the DCP folder does not hold the entries written", path=folder)
    for fqn, value in flat.items():
        ref = got[fqn][1]
        if isinstance(value, torch.Tensor):
            ok = isinstance(ref, TensorRef) and ref.dtype == str(value.dtype).removeprefix("torch.") \
                and torch.equal(ref.to_torch(), value.detach().cpu())
        else:
            ok = isinstance(ref, Stub) and ref.qualname == BYTES_ITEM
        if not ok:
            raise VerificationFailed(f"DCP entry {fqn!r} did not read back as written", path=folder)
