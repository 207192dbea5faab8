"""``write_checkpoint``: the one way ckpttool writes a checkpoint (remap, extract-ema, convert).

A tree (a flat ``{key: tensor}`` mapping for safetensors, any nested training dict for torch) whose
tensors are ``TensorRef``s or ``torch.Tensor``s is streamed to a temporary file beside the target,
fsynced, verified by reading it back with ckpttool's reader, and only then renamed into place.
The target is never an input, and an existing target is replaced only with ``force``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckpttool.errors import CkptError, OutputRefused, UsageError
from ckpttool.io.tensor_findings import refuse_composites
from ckpttool.io.write.atomic import check_target, commit, temporary_output
from ckpttool.io.write.pickle_writer import Transform
from ckpttool.io.write.safetensors import write_safetensors
from ckpttool.io.write.torch_zip import write_torch
from ckpttool.io.write.verify import verify_written
from ckpttool.model import PickledDict, StateDict
from ckpttool.progress import ProgressSink, WriteAndVerify

__all__ = ["WriteResult", "write_checkpoint", "output_format", "hashed_name", "TORCH_SUFFIXES"]

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar", ".pkl")
_FORMATS = {"safetensors": "safetensors", "torch": "torch-zip", "torch-zip": "torch-zip", "pt": "torch-zip"}


@dataclass(frozen=True)
class WriteResult:
    """Where a checkpoint was written and what it holds."""

    path: Path
    sha256: str
    format: str
    tensors: int
    nbytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "format": self.format,
                "tensors": self.tensors, "nbytes": self.nbytes}


def output_format(output: Path, fmt: str | None = None) -> str:
    """``safetensors`` or ``torch-zip``: from ``fmt`` when given, else from the file extension."""
    if fmt is not None:
        try:
            return _FORMATS[fmt]
        except KeyError:
            raise UsageError(f"unknown output format {fmt!r} (use safetensors or torch)") from None
    suffix = output.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in TORCH_SUFFIXES:
        return "torch-zip"
    raise UsageError(f"cannot tell the output format from {output.name!r}",
                     hint="name it .safetensors or .pt/.pth/.ckpt/.bin")


def hashed_name(output: Path, sha256: str) -> Path:
    """``name-1a2b3c4d.ext``: the first 8 hex digits of the sha256, as ``torch.hub`` checks them."""
    stem, dot, rest = output.name.partition(".")
    if not stem:  # a name starting with a dot
        stem, dot, rest = output.name, "", ""
    return output.with_name(f"{stem}-{sha256[:8]}{dot}{rest}")


def _as_dict(sd: StateDict) -> PickledDict:
    """A ``StateDict`` as the OrderedDict ``module.state_dict()`` returns, ``_metadata`` included."""
    out = PickledDict(sd.tensors, ordered=True)
    if sd.version_metadata:
        out.attrs["_metadata"] = PickledDict(sd.version_metadata, ordered=True)
    return out


def write_checkpoint(tree: Any, output: Path, *, inputs: Sequence[Path] = (), force: bool = False,
                     fmt: str | None = None, metadata: dict[str, str] | None = None,
                     hash_name: bool = False, transform: Transform | None = None,
                     progress: ProgressSink | None = None) -> WriteResult:
    """Write ``tree`` to ``output`` atomically and verified; see the module docstring.

    ``metadata`` goes into a safetensors file's ``__metadata__`` (torch files have no such slot).
    ``hash_name`` renames the output to ``stem-<sha256[:8]>.ext``. ``transform(value, path)``
    (torch output only) replaces values on the fly: lazy dtype casts, ``--sanitize`` rewrites.
    ``progress`` is told the tensor bytes to write and read back, then each chunk of both passes.

    Raises:
        OutputRefused: the target is an input, exists without ``force``, or cannot be written.
        VerificationFailed: the file did not read back as written (nothing is left behind).
    """
    output = Path(output)
    kind = output_format(output, fmt)
    inputs = tuple(Path(p) for p in inputs)
    check_target(output, inputs, force)
    if isinstance(tree, StateDict):
        tree = _as_dict(tree)
    if kind == "safetensors" and not isinstance(tree, dict):
        raise OutputRefused("safetensors holds a flat mapping of names to tensors", path=output)
    try:  # the one check, before anything is written, that no tensor would be dropped or altered
        refuse_composites(tree, "a safetensors file" if kind == "safetensors" else "a torch file written by ckpttool")
    except CkptError as exc:
        exc.path = output
        raise
    both = WriteAndVerify(progress) if progress is not None else None
    with temporary_output(output) as (tmp, sink):
        try:
            if kind == "safetensors":
                written = write_safetensors(tree, sink, metadata, both)
            else:
                written = write_torch(tree, sink, output.stem or "archive", transform, both)
            os.fsync(sink.fd)
        except CkptError as exc:
            exc.path = exc.path or output
            raise
        except OSError as exc:
            raise OutputRefused(f"writing failed: {exc.strerror or exc}", path=output) from None
        verify_written(tmp, kind, written, progress)
        sha = sink.hexdigest()
        final = hashed_name(output, sha) if hash_name else output
        if final != output:
            check_target(final, inputs, force)
        commit(tmp, final, force)
    return WriteResult(path=final, sha256=sha, format=kind, tensors=written.tensors, nbytes=sink.position)
