"""Which format a file is, from its bytes (never its extension)."""

from __future__ import annotations

from pathlib import Path

from ckpttool.io.formats.safetensors import looks_like_safetensors
from ckpttool.io.formats.torch_legacy import LEGACY_PREFIX

__all__ = ["sniff", "EXTENSIONS"]

EXTENSIONS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".ckpt": "torch",
              ".bin": "torch", ".tar": "torch", ".pkl": "pickle", ".pickle": "pickle"}


def sniff(head: bytes, size: int) -> str:
    """``torch-zip``, ``torch-legacy``, ``torch-tar``, ``safetensors``, ``pickle`` or ``unknown``."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "torch-zip"
    if head.startswith(LEGACY_PREFIX):
        return "torch-legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "torch-tar"
    if looks_like_safetensors(head, size):
        return "safetensors"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "pickle"
    if head[:1] in (b"(", b"}", b"]", b"c") and size > 1:
        return "pickle"
    return "unknown"


def extension_format(path: Path) -> str | None:
    """What the extension claims (``torch``, ``safetensors``, ``pickle``), if anything."""
    return EXTENSIONS.get(path.suffix.lower())
