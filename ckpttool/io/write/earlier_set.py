"""The output a shard set replaces: the single file, the index and every file the index names.

A shard set at ``out/model.safetensors`` is one unit on disk: ``model.safetensors`` (when it fit
in one file) or ``model.safetensors.index.json`` plus the shards its ``weight_map`` names. Writing
a new set with another shard count over it must not leave old shards beside the new ones (a
loader that globs them, or prefers the single file over the index, would read stale weights), so
``--force`` replaces the earlier unit whole: its files are moved aside, the new ones moved in, and
only then are the old ones removed; a failure moves them back. Files the index does not name are
never touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

from ckpttool.errors import CkptError, OutputRefused
from ckpttool.io.write.atomic import check_target, fsync_dir

__all__ = ["earlier_set", "replacing", "remove_earlier"]


def _named_files(index_path: Path) -> list[Path]:
    """The files ``index_path``'s weight_map names that exist, in the index's folder (refused if unreadable)."""
    from ckpttool.io.formats.sharded import _load_index, _shard_file

    try:
        weight_map = _load_index(index_path)["weight_map"]
        names = sorted(set(weight_map.values()))
        files = [_shard_file(index_path.parent, name, index_path) for name in names]
    except CkptError as exc:
        raise OutputRefused(f"the earlier shard index cannot be read ({exc.message}), so the shards it "
                            "names cannot be replaced with it", path=index_path,
                            hint="remove the earlier shard set, or write to another folder") from None
    return [f for f in files if f.is_file()]


def earlier_set(single: Path, index_path: Path, inputs: Sequence[Path], force: bool) -> list[Path]:
    """The files of an earlier output at this target; refused without ``force`` or if one is an input.

    ``single`` is the one-file name (``model.safetensors``), ``index_path`` its index. Every file
    returned passes ``check_target`` (not an input, not a folder), so it may be replaced.
    """
    files: list[Path] = []
    if index_path.is_file():
        files.extend(f for f in _named_files(index_path) if f not in (single, index_path))
        files.append(index_path)
    if single.exists() or single.is_symlink():
        files.append(single)
    for f in files:
        check_target(f, tuple(inputs), force)
    return files


def _aside(path: Path, token: str) -> Path:
    return path.parent / f".{path.name}.{token}.ckpttool-old"


@contextlib.contextmanager
def replacing(files: Sequence[Path]) -> Iterator[None]:
    """Move ``files`` aside for the body; remove them if it succeeds, put them back if it fails.

    The body moves the new files into place; whatever it left at these names on failure is
    replaced by the earlier file again, so a failed write leaves the earlier set as it was.
    """
    token = secrets.token_hex(4)
    moved: list[tuple[Path, Path]] = []
    try:
        for f in files:
            aside = _aside(f, token)
            try:
                os.replace(f, aside)
            except OSError as exc:
                raise OutputRefused(f"cannot move the earlier file aside: {exc.strerror or exc}", path=f) from None
            moved.append((f, aside))
        yield
    except BaseException:
        for f, aside in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(aside, f)
        raise
    for _, aside in moved:
        with contextlib.suppress(OSError):
            aside.unlink()
    for folder in {f.parent for f in files}:
        fsync_dir(folder)


def remove_earlier(files: Sequence[Path], keep: Sequence[Path]) -> None:
    """Remove the earlier set's files once the new output is in place (the index first)."""
    keep_set = set(keep)
    for f in sorted(files, key=lambda p: not p.name.endswith(".index.json")):
        if f not in keep_set:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
    for folder in {f.parent for f in files}:
        fsync_dir(folder)
