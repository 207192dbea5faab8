"""Under torchrun each rank reports progress over its own share of the shard set, and the shares make the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.dcp.conftest import dcp_folders
from tests.progress.test_totals import _safetensors_bytes

__all__ = ["dcp_folders"]

_SCRIPT = """
import json, os, sys
from ckpttool.ops.convert import ConvertOptions, convert
from ckpttool.progress import Tally
tally = Tally()
convert(sys.argv[1], sys.argv[2], ConvertOptions(max_shard_size=200), progress=tally)
with open(os.path.join(sys.argv[3], f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump([tally.total, tally.done], f)
"""


def test_each_rank_counts_its_share(dcp_folders: dict[str, Path], tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), str(dcp_folders["fsdp"]), str(out), str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    shards = sorted(out.glob("*.safetensors"))
    assert len(shards) >= 2
    assert all(total == did > 0 for total, did in counts)  # both ranks wrote a share, each counted to its end
    assert sum(total for total, _ in counts) == 2 * _safetensors_bytes(shards)


_DIFF_SCRIPT = """
import json, os, sys
import ckpttool
from ckpttool.ops.diff import diff_checkpoints
from ckpttool.progress import Tally
tally = Tally()
diff_checkpoints(ckpttool.open(sys.argv[1]), ckpttool.open(sys.argv[2]), progress=tally)
with open(os.path.join(sys.argv[3], f"diff{os.environ['RANK']}.json"), "w") as f:
    json.dump([tally.total, tally.done], f)
"""


def test_diff_ranks_count_their_share_to_its_end(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {f"layer{i}.weight": torch.randn(64 * (i + 1), 33) for i in range(5)}
    save_file(tensors, str(tmp_path / "a.safetensors"))
    tensors["layer2.weight"] += 1
    save_file(tensors, str(tmp_path / "b.safetensors"))
    script = tmp_path / "diff.py"
    script.write_text(_DIFF_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
                           str(tmp_path)], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = [json.loads((tmp_path / f"diff{r}.json").read_text()) for r in (0, 1)]
    assert all(total == did > 0 for total, did in counts)  # each rank's bar ends full
    assert sum(total for total, _ in counts) == sum(t.nbytes for t in tensors.values())
