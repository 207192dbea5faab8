"""A set of output files written as independent units, then published together.

Each shard is written (streamed, verified) under a hidden name beside its target, by this
process, by ``--jobs`` worker processes, or by the ranks of a ``torchrun`` group; once every one
of them is done, the leader writes the index (``publish``) and renames the shards into place.
A failure anywhere removes every hidden shard and publishes nothing. Progress covers the shards
this process and its workers write (under torchrun: this rank's share), chunk by chunk.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ckpttool.errors import CkptError
from ckpttool.io.write.atomic import commit
from ckpttool.io.write.checkpoint import WriteResult, write_checkpoint
from ckpttool.io.write.earlier_set import replacing
from ckpttool.progress import Planned, ProgressSink

__all__ = ["write_shard_set", "publish_shards"]

T = TypeVar("T")


def _hidden(path: Path, token: str) -> Path:
    return path.parent / f".{path.name}.{token}.ckpttool-part"


def write_shard_set(shards: Sequence[Mapping[str, Any]], paths: Sequence[Path], *, inputs: Sequence[Path],
                    force: bool, jobs: int, publish: Callable[[], T], progress: ProgressSink | None = None,
                    replaces: Sequence[Path] = ()) -> tuple[list[WriteResult], T]:
    """Write ``shards[i]`` to ``paths[i]``, then ``publish()``; returns the shard results and what it returned.

    ``replaces``: the files of an earlier set at this target (``earlier_set``), replaced as a unit.
    """
    from ckpttool.parallel import ranks_from_env, run_units
    from ckpttool.parallel.relay import Relay
    from ckpttool.parallel.torchrun import RankFailed

    ranks = ranks_from_env()
    if ranks is not None:
        ranks.start()
    token = secrets.token_hex(4)
    if ranks is not None:
        token = ranks.gather(token)[0]  # every rank names the hidden files as the leader does
    hidden = [_hidden(p, token) for p in paths]
    sizes = [sum(getattr(t, "nbytes", 0) for t in shard.values()) for shard in shards]
    relay = Relay(progress) if progress is not None else None
    if progress is not None:  # written and read back: twice the shards' bytes, announced up front
        progress.start(2 * sum(sizes[i] for i in (ranks.share(sizes) if ranks is not None else range(len(sizes)))))

    def work(i: int) -> WriteResult:
        r = write_checkpoint(dict(shards[i]), hidden[i], inputs=tuple(inputs), force=False, fmt="safetensors",
                             metadata={"format": "pt"}, progress=Planned(relay, 2 * sizes[i]) if relay else None)
        return WriteResult(paths[i], r.sha256, r.format, r.tensors, r.nbytes)

    published: Any = None
    try:
        done = ranks.run(work, sizes, jobs, relay) if ranks is not None else run_units(work, sizes, jobs, relay)
        if ranks is None:
            published = publish_shards(hidden, paths, force, publish, replaces)
        else:
            error = None
            if ranks.is_leader:
                try:
                    published = publish_shards(hidden, paths, force, publish, replaces)
                except CkptError as exc:
                    error = exc.message
                except Exception as exc:  # noqa: BLE001 - told to every rank, then raised
                    error = f"{type(exc).__name__}: {exc}"
            published, error = ranks.gather((published, error))[0]
            if error:
                raise RankFailed(f"rank 0: {error}")
    except BaseException:
        for h in hidden:
            with contextlib.suppress(OSError):
                h.unlink()
        raise
    finally:
        if ranks is not None:
            ranks.stop()
    return done, published


def publish_shards(hidden: Sequence[Path], paths: Sequence[Path], force: bool, publish: Callable[[], T],
                   replaces: Sequence[Path] = ()) -> T:
    """Rename every written shard from ``hidden`` into ``paths``, then ``publish()`` (the index).

    ``replaces`` (an earlier set at this target) goes only once the new set is in place; on any
    failure the shards already moved are removed and the earlier set is restored.
    """
    moved: list[Path] = []
    with replacing(replaces):  # the earlier set goes only once the new one is in place
        try:
            for h, p in zip(hidden, paths):
                commit(h, p, force)  # a link (then the hidden name goes) or, with force, a rename
                moved.append(p)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(h)
            return publish()
        except BaseException:
            for p in moved:
                with contextlib.suppress(OSError):
                    p.unlink()
            raise
