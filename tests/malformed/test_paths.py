"""Things that are not checkpoint files: empty, a folder, symlink loops, a FIFO, a device, nothing.

A FIFO would block a reader that opened it, so these run in the bounded child too.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.malformed.bounded import assert_clean_error, run_bounded


def test_non_files_are_one_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    loop_a, loop_b = tmp_path / "loop_a.pt", tmp_path / "loop_b.pt"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    dangling = tmp_path / "dangling.pt"
    dangling.symlink_to(tmp_path / "nowhere.pt")
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    paths = [empty, folder, loop_a, dangling, fifo, Path("/dev/null"), Path("/dev/zero"), tmp_path / "missing.pt"]
    results = run_bounded(paths, timeout=60)
    for path in paths:
        assert_clean_error(results[str(path)])
    assert results[str(folder)].open in ("unsupported-format", "unreadable-checkpoint")
    assert results[str(empty)].open == "unreadable-checkpoint"
