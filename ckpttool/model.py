"""The core data types: lazy tensors, stand-ins for foreign objects, checkpoints and findings.

Data only: nothing here opens files by itself. A ``TensorRef`` reads its bytes through the
``ByteSource`` the reader attached, and only when asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ckpttool.dtypes import by_name
from ckpttool.errors import SectionNotFound, UnreadableCheckpoint

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = [
    "Severity", "Finding", "ByteSource", "Storage", "TensorRef", "GlobalRef", "Stub",
    "PickledDict", "StateDict", "Section", "Checkpoint", "GlobalUse", "SECTION_KINDS",
    "CHUNK_BYTES", "CompositeTensor", "merged_state",
]

Severity = Literal["info", "warn", "error"]
SECTION_KINDS = ("model", "ema", "optimizer", "scheduler", "scaler", "meta")
CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    """Something worth telling the user, with a stable code such as ``unsafe.global``."""

    code: str
    severity: Severity
    message: str
    hint: str | None = None
    where: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "severity": self.severity, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.where is not None:
            out["where"] = self.where
        return out


class ByteSource(Protocol):
    """Somewhere bytes can be read from by absolute offset (a file, a zip member...)."""

    path: Path

    def read(self, offset: int, length: int) -> bytes: ...

    def chunks(self, offset: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]: ...


@dataclass(eq=False, slots=True)
class Storage:
    """One storage record: the bytes several tensors (views) may share.

    ``key`` identifies the storage within its file (torch's ``data/<key>``); two ``TensorRef``s with
    the same ``Storage`` object share memory in torch.
    """

    key: str
    dtype: str
    nbytes: int
    location: str
    source: ByteSource | None
    offset: int = 0
    byteorder: str = "little"

    def read(self, start: int = 0, length: int | None = None) -> bytes:
        if self.source is None:
            raise UnreadableCheckpoint(f"storage {self.key!r} has no data in this file")
        length = self.nbytes - start if length is None else length
        return self.source.read(self.offset + start, length)


@dataclass(eq=False, slots=True)
class TensorRef:
    """A tensor known by its metadata; its bytes are read only on request.

    ``storage_offset`` and ``stride`` are in elements, as in torch.
    """

    dtype: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    storage: Storage
    storage_offset: int = 0
    requires_grad: bool = False
    is_parameter: bool = False

    @property
    def itemsize(self) -> int:
        d = by_name(self.dtype)
        return d.itemsize if d else 1

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def is_contiguous(self) -> bool:
        expected = 1
        for size, st in zip(reversed(self.shape), reversed(self.stride)):
            if size != 1 and st != expected:
                return False
            expected *= size
        return True

    def chunks(self, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The tensor's bytes in C order, little-endian, in pieces of at most ``chunk`` bytes."""
        if self.numel == 0:
            return
        if self.is_contiguous and self.storage.byteorder == "little" and self.storage.source is not None:
            start = self.storage_offset * self.itemsize
            yield from self.storage.source.chunks(self.storage.offset + start, self.nbytes, chunk)
            return
        yield self._gathered()

    def read_bytes(self) -> bytes:
        """All of the tensor's bytes in C order, little-endian (loads the tensor in memory)."""
        return b"".join(self.chunks())

    def digest(self) -> str:
        """sha256 of the tensor's C-order bytes, streamed chunk by chunk."""
        import hashlib  # not at module import: OpenSSL's start-up is a large share of inspect's time

        h = hashlib.sha256()
        for piece in self.chunks():
            h.update(piece)
        return h.hexdigest()

    def to_numpy(self) -> np.ndarray:
        """A numpy array of the raw elements (bfloat16 and float8 come back as unsigned ints)."""
        from ckpttool.tensors import as_numpy

        return as_numpy(self)

    def to_torch(self) -> torch.Tensor:
        """A torch tensor with this tensor's dtype, shape and values (imports torch)."""
        from ckpttool.tensors import as_torch

        return as_torch(self)

    def _gathered(self) -> bytes:
        from ckpttool.tensors import gather_bytes

        return gather_bytes(self)


@dataclass(eq=False)
class CompositeTensor:
    """A tensor torch rebuilds from more than one strided buffer, or that ckpttool cannot decode.

    Quantized, sparse and nested tensors, ``DTensor``, torchao weights and unknown subclasses are
    entries of their section like plain tensors, so nothing torch would load goes missing: ``kind``
    says what it is, ``parts`` are its inner tensors (by their role: ``int_repr``, ``indices``,
    ``local_shard``...), ``params`` its plain-data state (scale, placements...). ``decoded`` is
    False for an unknown kind: then only its parts and state are known, never its values.
    """

    kind: str
    rebuild: str
    dtype: str
    shape: tuple[int, ...] | None
    parts: dict[str, TensorRef] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    decoded: bool = True
    note: str = ""

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape or ():
            n *= s
        return n if self.shape is not None else 0

    @property
    def nbytes(self) -> int:
        """Bytes the parts hold (what the file stores, not the logical size)."""
        return sum(p.nbytes for p in self.parts.values())

    def __repr__(self) -> str:
        return f"<{self.kind} tensor {self.dtype}{list(self.shape or [])}>"


@dataclass(frozen=True, slots=True)
class GlobalRef:
    """A global (``module.qualname``) the pickle referenced but that was not called."""

    module: str
    name: str
    fullname: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fullname", f"{self.module}.{self.name}")  # looked up on every call

    def __repr__(self) -> str:
        return f"<global {self.fullname}>"


def merged_state(state: Any) -> dict[str, Any]:
    """The attributes a BUILD state sets: a ``__dict__``, or a ``(dict_state, slots_state)`` pair merged."""
    if isinstance(state, tuple) and len(state) == 2:
        merged: dict[str, Any] = {}
        for part in state:
            if isinstance(part, dict):
                merged.update(part)
        return merged
    return state if isinstance(state, dict) else {}


class Stub:
    """Stand-in for an object of a class ckpttool did not import; it records and never runs.

    ``args`` are the constructor/reduce arguments, ``state`` what BUILD (``__setstate__``) gave,
    ``items``/``entries`` what APPENDS/SETITEMS added. ``dangerous`` marks stubs built from a
    global that could run code. ``origin`` is the call that built it as the pickle made it
    (opcode, callable, arguments, keyword arguments), so a rewrite can emit it again unchanged.
    """

    __slots__ = ("qualname", "args", "state", "items", "entries", "dangerous", "origin", "__weakref__")

    def __init__(self, qualname: str, args: tuple[Any, ...] = (), dangerous: bool = False,
                 origin: tuple[bytes, Any, tuple[Any, ...], dict[str, Any] | None] | None = None) -> None:
        self.qualname = qualname
        self.args = args
        self.state: Any = None
        self.items: list[Any] = []
        self.entries: dict[Any, Any] = {}
        self.dangerous = dangerous
        self.origin = origin

    @property
    def attributes(self) -> dict[str, Any]:
        """The instance ``__dict__`` this object would have had (BUILD state)."""
        return merged_state(self.state)

    @property
    def is_module(self) -> bool:
        """True when the state looks like an ``nn.Module`` (has ``_parameters`` and ``_modules``)."""
        attrs = self.attributes
        return "_parameters" in attrs and "_modules" in attrs

    def __repr__(self) -> str:
        return f"<stub {self.qualname}>"


class PickledDict(dict):  # type: ignore[type-arg]
    """A dict (or OrderedDict) from a pickle, keeping attributes set on it (state_dict ``_metadata``)."""

    __slots__ = ("attrs", "ordered")

    def __init__(self, *args: Any, ordered: bool = False) -> None:
        super().__init__(*args)
        self.attrs: dict[str, Any] = {}
        self.ordered = ordered


@dataclass(eq=False)
class StateDict(Mapping[str, TensorRef]):
    """An ordered key → ``TensorRef`` mapping: what remap, diff and ema work on.

    ``composites`` holds the entries that are not one plain strided tensor (quantized, sparse,
    DTensor, unknown subclasses...): listed and compared, never written without being asked.
    ``parameters`` holds the keys known to be parameters (others are buffers) when the layout tells
    (a pickled module does; a bare dict does not: then it is None). ``extras`` keeps non-tensor
    entries found among the tensors (``_extra_state``), ``version_metadata`` torch's ``_metadata``.
    """

    tensors: dict[str, TensorRef] = field(default_factory=dict)
    parameters: frozenset[str] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    version_metadata: dict[str, Any] | None = None
    composites: dict[str, CompositeTensor] = field(default_factory=dict)

    def __getitem__(self, key: str) -> TensorRef:
        return self.tensors[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def kind_of(self, key: str) -> str | None:
        """``parameter``, ``buffer``, or None when the layout does not tell them apart."""
        if self.parameters is None:
            return None
        return "parameter" if key in self.parameters else "buffer"

    @property
    def numel(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


@dataclass(frozen=True)
class Section:
    """A named part of a checkpoint: where it was found and what it holds.

    ``source`` is the dotted path of the section in the tree (``model``, ``state_dict_ema``,
    ``callbacks.EMA.average_model_state``); ``state_dict`` is set for model and ema sections.
    """

    kind: str
    source: str
    value: Any
    state_dict: StateDict | None = None


@dataclass(frozen=True, slots=True)
class GlobalUse:
    """A global the file's pickles reference, how ckpttool classed it, and how often."""

    name: str
    kind: Literal["data", "stub", "dangerous"]
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "count": self.count}


@dataclass(eq=False)
class Checkpoint:
    """What ``ckpttool.open()`` returns: the object tree plus what was recognised in it."""

    path: Path
    format: str
    tree: Any
    file_size: int
    layout: str = "unknown"
    sections: dict[str, Section] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    globals: list[GlobalUse] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    members: dict[str, Any] = field(default_factory=dict)

    def section(self, kind: str) -> Section:
        """The section ``kind``; raises ``SectionNotFound`` (never returns None)."""
        try:
            return self.sections[kind]
        except KeyError:
            have = ", ".join(self.sections) or "none"
            raise SectionNotFound(f"no {kind} section in this checkpoint (sections: {have})",
                                  path=self.path) from None

    def state_dict(self, kind: str = "model") -> StateDict:
        """The state_dict of the model (or ema) section."""
        section = self.section(kind)
        if section.state_dict is None:
            raise SectionNotFound(f"the {kind} section holds no tensors", path=self.path)
        return section.state_dict

    @property
    def dangerous(self) -> list[str]:
        return [g.name for g in self.globals if g.kind == "dangerous"]
