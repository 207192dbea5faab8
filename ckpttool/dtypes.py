"""One table of element types: torch name, itemsize, safetensors code, legacy storage class, numpy.

Everything that needs to translate between the names a file uses and the bytes it holds asks here,
so a new dtype is added in one row.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DType", "DTYPES", "by_name", "by_storage_class", "by_safetensors", "is_floating",
           "packed_nbytes"]


@dataclass(frozen=True, slots=True)
class DType:
    """One element type.

    Attributes:
        name: torch's name without the ``torch.`` prefix (``float32``, ``bfloat16``).
        itemsize: bytes per element.
        safetensors: the safetensors header code, or None where safetensors has none (complex32,
            complex128 and the quantized types: safetensors 0.8 has no code for them).
        storage_class: the legacy typed-storage class torch pickles (``FloatStorage``), if any.
        numpy: the numpy dtype string for the raw bytes, or None where numpy has no such type.
        kind: ``f`` floating, ``c`` complex, ``i`` signed, ``u`` unsigned, ``b`` bool.
    """

    name: str
    itemsize: int
    safetensors: str | None
    storage_class: str | None
    numpy: str | None
    kind: str


DTYPES: tuple[DType, ...] = (
    DType("float64", 8, "F64", "DoubleStorage", "<f8", "f"),
    DType("float32", 4, "F32", "FloatStorage", "<f4", "f"),
    DType("float16", 2, "F16", "HalfStorage", "<f2", "f"),
    DType("bfloat16", 2, "BF16", "BFloat16Storage", None, "f"),
    DType("float8_e4m3fn", 1, "F8_E4M3", None, None, "f"),
    DType("float8_e5m2", 1, "F8_E5M2", None, None, "f"),
    DType("float8_e4m3fnuz", 1, "F8_E4M3FNUZ", None, None, "f"),
    DType("float8_e5m2fnuz", 1, "F8_E5M2FNUZ", None, None, "f"),
    DType("float8_e8m0fnu", 1, "F8_E8M0", None, None, "f"),
    DType("int64", 8, "I64", "LongStorage", "<i8", "i"),
    DType("int32", 4, "I32", "IntStorage", "<i4", "i"),
    DType("int16", 2, "I16", "ShortStorage", "<i2", "i"),
    DType("int8", 1, "I8", "CharStorage", "|i1", "i"),
    DType("uint64", 8, "U64", None, "<u8", "u"),
    DType("uint32", 4, "U32", None, "<u4", "u"),
    DType("uint16", 2, "U16", None, "<u2", "u"),
    DType("uint8", 1, "U8", "ByteStorage", "|u1", "u"),
    DType("bool", 1, "BOOL", "BoolStorage", "|b1", "b"),
    DType("complex128", 16, None, "ComplexDoubleStorage", "<c16", "c"),
    DType("complex64", 8, "C64", "ComplexFloatStorage", "<c8", "c"),
    DType("complex32", 4, None, "ComplexHalfStorage", None, "c"),
    DType("qint8", 1, None, "QInt8Storage", "|i1", "i"),
    DType("quint8", 1, None, "QUInt8Storage", "|u1", "u"),
    DType("qint32", 4, None, "QInt32Storage", "<i4", "i"),
    # sub-byte quantized types: torch counts one byte per element in itemsize but packs 2 (4x2) or
    # 4 (2x4) elements per byte in storage; ``packed_nbytes`` gives the real size
    DType("quint4x2", 1, None, "QUInt4x2Storage", "|u1", "u"),
    DType("quint2x4", 1, None, "QUInt2x4Storage", "|u1", "u"),
)

_PER_BYTE = {"quint4x2": 2, "quint2x4": 4}

_BY_NAME = {d.name: d for d in DTYPES}
_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
            "short": "int16", "cfloat": "complex64", "cdouble": "complex128", "chalf": "complex32"}
_BY_STORAGE = {d.storage_class: d for d in DTYPES if d.storage_class}
_BY_SAFETENSORS = {d.safetensors: d for d in DTYPES if d.safetensors}


def by_name(name: str) -> DType | None:
    """The dtype called ``name`` (``torch.`` prefix and torch's aliases accepted), or None."""
    name = name.removeprefix("torch.")
    return _BY_NAME.get(_ALIASES.get(name, name))


def by_storage_class(name: str) -> DType | None:
    """The dtype of a legacy typed-storage class name such as ``FloatStorage``."""
    return _BY_STORAGE.get(name.rsplit(".", 1)[-1])


def by_safetensors(code: str) -> DType | None:
    """The dtype of a safetensors header code such as ``BF16``."""
    return _BY_SAFETENSORS.get(code)


def packed_nbytes(name: str, numel: int) -> int:
    """Bytes ``numel`` elements of ``name`` occupy in storage (sub-byte types packed)."""
    d = by_name(name)
    per = _PER_BYTE.get(d.name, 0) if d else 0
    if per:
        return -(-numel // per)
    return numel * (d.itemsize if d else 1)


def is_floating(name: str) -> bool:
    """True for real floating types (the ones a ``--dtype`` cast applies to)."""
    d = by_name(name)
    return d is not None and d.kind == "f"
