"""File → DCP folder over ``--jobs`` and torchrun ranks, against torch's ``torch_save_to_dcp``, in one run.

Run: ``python bench/dcp_write_bench.py [--size 1GiB] [--repeat 1]``. Builds, once, in
$CKPTTOOL_BENCH_DIR (default /tmp/ckpttool-bench) the transformer-like ``.pt`` of ``dcp_bench.py``
(288 tensors plus a 256 MiB ``lm_head``), in a separate child so this process stays small. Then
converts it to a DCP folder with ckpttool ``--jobs 1`` and ``--jobs 2``, under ``torchrun
--nproc-per-node 2`` (gloo on 127.0.0.1, ``--jobs 1`` per rank), and with ``torch_save_to_dcp``.
Every command is a fresh child process; time is wall clock (best of ``--repeat``), peak RSS the
largest of the child and the processes it waited for. The ckpttool outputs are checked to be the
same bytes whatever the number of processes.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd, timed
from dcp_bench import TORCH_TO_DCP, fresh, parse_size, single_pt


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            while block := f.read(1 << 24):
                h.update(block)
    return h.hexdigest()


def _best(cmd: list[str], out: Path, repeat: int) -> tuple[float, int]:
    """``timed`` with the output folder removed before each run (outside the timing)."""
    runs = []
    for _ in range(repeat):
        fresh(out)
        runs.append(timed(cmd, 1))
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    total = parse_size(args.size)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    pt = BENCH_DIR / f"model-{total >> 20}MiB.pt"
    if args.build:
        single_pt(pt, total)
        return
    subprocess.run([sys.executable, __file__, "--build", "--size", args.size], check=True)
    py = sys.executable
    out = BENCH_DIR / "dcp-write-out"
    rows = []
    digests = {}
    for jobs in ("1", "2"):
        rows.append((f"--jobs {jobs}", _best(ckpttool_cmd("convert", str(pt), "-o", str(out), "--jobs", jobs), out,
                                               args.repeat)))
        digests[jobs] = _digest(out)
    ranks = [py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ckpttool",
             "convert", str(pt), "-o", str(out), "--jobs", "1"]
    rows.append(("torchrun, 2 ranks", _best(ranks, out, args.repeat)))
    digests["ranks"] = _digest(out)
    ours_files = len(list(out.glob("*.distcp")))
    tiny = Path(__file__).resolve().parents[1] / "fixtures" / "model1_state_dict.pt"
    start = [py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ckpttool",
             "scan", str(tiny)]
    rows.append(("(torchrun start-up alone: 2 ranks scan a 250 KB file)", _best(start, out, args.repeat)))
    base = _best([py, "-c", TORCH_TO_DCP, str(pt), str(out)], out, args.repeat)
    files = len(list(out.glob("*.distcp")))
    fresh(out)
    print(f"{total >> 20} MiB .pt -> DCP; torch_save_to_dcp {base[0]:.2f} s, {base[1] / 1024:.0f} MiB "
          f"({files} data file); ckpttool writes {ours_files} data files\n")
    print("| ckpttool | time (s) | peak RSS (MiB) | ratio to torch_save_to_dcp |")
    print("|---|---:|---:|---:|")
    for what, (t, rss) in rows:
        print(f"| {what} | {t:.2f} | {rss / 1024:.0f} | {t / base[0]:.2f}x |")
    same = len(set(digests.values())) == 1
    print(f"\nsame bytes for --jobs 1, --jobs 2 and 2 ranks: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
