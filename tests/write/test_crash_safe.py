"""SIGKILL during a large write: the input is intact, the target is absent or a complete version.

A child process writes a ~24 MB checkpoint with ``write_checkpoint`` (safetensors and torch zip,
``force=True`` over an older version) and is killed at random points, from the first byte to the
rename. After each kill: the input's sha256 is unchanged; the target is missing (first round), the
complete previous version, or the complete new one — never a torn file; the only other file
allowed in the folder is the killed writer's temporary, ``.<target>.<pid>-<hex>.ckpttool-tmp``,
which a killed process cannot remove; the next write to the same target removes it (its PID is
gone), so temporaries never pile up. The next uninterrupted run succeeds, reads back and leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ckpttool
from tests.conftest import ROOT

_WRITER = r"""
import sys
from pathlib import Path
import ckpttool
from ckpttool.io.write.checkpoint import write_checkpoint
src, out, scale = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
tree = dict(ckpttool.open(src).state_dict())
if scale == "old":  # an older version: the same keys, fewer of them
    tree = dict(list(tree.items())[:2])
print("go", flush=True)
write_checkpoint(tree, out, inputs=[src], force=True)
print("done", flush=True)
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(src: Path, out: Path, version: str, kill_after: float | None = None) -> bool:
    """Run the writer; with ``kill_after`` SIGKILL it that long after it starts writing. True if it finished."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(src), str(out), version], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "go"
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    if kill_after is None:
        assert proc.returncode == 0, err
    return proc.returncode == 0


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    folder = tmp_path_factory.mktemp("crash-src")
    gen = torch.Generator().manual_seed(0)
    path = folder / "input.pt"
    torch.save({f"layer{i}.weight": torch.randn(1024, 1024, generator=gen) for i in range(6)}, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_sigkill_never_tears_the_target_or_touches_the_input(source: Path, tmp_path: Path, suffix: str) -> None:
    src_sha = _sha(source)
    target = tmp_path / f"model{suffix}"
    # reference hashes: the complete old and new versions (the writer is deterministic)
    ref = tmp_path / "ref"
    ref.mkdir()
    _write(source, ref / target.name, "old")
    old_sha = _sha(ref / target.name)
    t0 = time.monotonic()
    _write(source, ref / target.name, "new")
    duration = time.monotonic() - t0
    new_sha = _sha(ref / target.name)
    assert old_sha != new_sha

    temporary = re.compile(rf"^\.{re.escape(target.name)}\.[0-9]+-[0-9a-f]+\.ckpttool-tmp$")
    rng = random.Random(f"crash{suffix}")
    points = [0.0, *sorted(rng.uniform(0, duration * 1.1) for _ in range(9))]
    states = set()
    for i, delay in enumerate(points):
        if i == 1:  # from the second round on, an older complete version is in place
            _write(source, target, "old")
        _write(source, target, "new", kill_after=delay)
        assert _sha(source) == src_sha, "the input changed"
        if target.exists():
            sha = _sha(target)
            assert sha in (old_sha, new_sha), f"torn target after a kill at {delay:.3f}s"
            states.add("new" if sha == new_sha else "old")
        else:
            assert i == 0, "the previous version vanished"
            states.add("absent")
        strays = [p.name for p in tmp_path.iterdir() if p.name not in (target.name, "ref")]
        assert all(temporary.match(name) for name in strays), strays
        assert len(strays) <= 1, f"earlier writers' temporaries were not swept: {strays}"
    print(f"{suffix}: write {duration:.3f}s, outcomes after kills: {sorted(states)}")
    assert "absent" in states or "old" in states  # the kills did land mid-write

    # the next, uninterrupted run succeeds, leaves nothing else behind, and reads back
    _write(source, target, "new")
    assert _sha(target) == new_sha
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, "ref"])
    assert len(ckpttool.open(target).state_dict()) == 6
    assert _sha(source) == src_sha
