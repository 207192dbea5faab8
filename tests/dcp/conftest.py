"""Real DCP folders, written once per test session by gloo processes (see ``make_folders.py``).

They are kept in pytest's cache, keyed by the writer script and the torch version, so a rerun
does not start the process groups again; a fresh checkout writes them anew.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

MAKER = Path(__file__).with_name("make_folders.py")
FOLDERS = ("shard0", "shard1", "fsdp", "mesh2d")


@pytest.fixture(scope="session")
def dcp_folders(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    key = hashlib.sha256(MAKER.read_bytes() + torch.__version__.encode()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider: made afresh then
    root = Path(cache.mkdir(f"dcp-folders-{key}")) if cache is not None else tmp_path_factory.mktemp("dcp-folders")
    if not all((root / name / ".metadata").is_file() for name in FOLDERS):
        for world in ("2", "4"):
            subprocess.run([sys.executable, str(MAKER), str(root), world], check=True, timeout=600,
                           capture_output=True)
    return {name: root / name for name in FOLDERS}


def dcp_load_full(folder: Path, fqns: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, object]:
    """torch's own reader as the oracle: ``dcp.load`` into full tensors of each global shape."""
    import warnings

    import torch
    import torch.distributed.checkpoint as dcp

    state = {k: torch.empty(shape, dtype=getattr(torch, dtype)) for k, (dtype, shape) in fqns.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(state, checkpoint_id=folder, no_dist=True)
    return state
