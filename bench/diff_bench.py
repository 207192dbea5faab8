"""Benchmark ``ckpttool diff`` on two big synthetic checkpoints against plain byte comparison and torch.

Builds (outside the repo, in --dir, default /tmp/ckpttool_diff_bench) a ~SIZE GB torch checkpoint A,
an identical copy A2 saved separately, B with a quarter of its tensors perturbed, and C with every
tensor perturbed. Each contender runs in its own child process; wall time and the child's peak RSS
(``wait4`` rusage) are measured, best of --repeat runs (warm page cache). Prints a markdown table.

Contenders:
  pread            tensor-data ranges (from the zip index) read in 16 MiB windows and compared with ==
  numpy-memmap     ``numpy.array_equal`` of each tensor's bytes through memory maps of both files
  torch-naive      ``torch.load`` both, ``torch.equal`` per key, stats on the differing ones
  ckpttool         ``ckpttool diff A B --json`` (streams chunks, no torch import)

Usage:  .venv/bin/python bench/diff_bench.py [--size-gb 2] [--repeat 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

_MAKE = textwrap.dedent("""
    import sys, torch
    size_gb, out_a, out_a2, out_b, out_c = float(sys.argv[1]), *sys.argv[2:6]
    torch.manual_seed(0)
    total = int(size_gb * 2**30)
    big, small = 8 * 2**20, 128 * 2**10  # elements: 32 MiB and 512 KiB float32 tensors
    n_big = int(total * 0.75) // (big * 4)
    n_small = int(total * 0.25) // (small * 4)
    sd = {}
    for i in range(n_big):
        t = torch.randn(big // 4096, 4096)
        sd[f"blocks.{i}.mlp.weight"] = t.to(torch.bfloat16) if i % 4 == 3 else t
    for i in range(n_small):
        sd[f"blocks.{i % max(n_big, 1)}.attn.{i}.weight"] = torch.randn(small // 256, 256)
    torch.save(sd, out_a)
    torch.save(sd, out_a2)
    some = {k: (v + 1e-3 * torch.randn_like(v, dtype=torch.float32).to(v.dtype) if i % 4 == 0 else v)
            for i, (k, v) in enumerate(sd.items())}
    torch.save(some, out_b)
    del some
    every = {k: v + 1e-3 * torch.randn_like(v, dtype=torch.float32).to(v.dtype) for k, v in sd.items()}
    torch.save(every, out_c)
""")

# Tensor data ranges come from the zip index (stdlib zipfile); the baselines compare those bytes only
# (whole-file ``cmp`` is no baseline: torch writes the archive name and a random serialization id).
_RANGES = textwrap.dedent("""
    import os, sys, zipfile
    def ranges(path):
        out = {}
        with zipfile.ZipFile(path) as z, open(path, 'rb') as f:
            for info in z.infolist():
                if '/data/' in info.filename and not info.filename.endswith('.pkl'):
                    f.seek(info.header_offset + 26)
                    n, m = int.from_bytes(f.read(2), 'little'), int.from_bytes(f.read(2), 'little')
                    out[info.filename.split('/data/')[1]] = (info.header_offset + 30 + n + m, info.file_size)
        return out
    a, b = sys.argv[1], sys.argv[2]
    ra, rb = ranges(a), ranges(b)
""")

_PREAD = _RANGES + textwrap.dedent("""
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    same = ra.keys() == rb.keys()
    window = 16 << 20
    for k, (off, size) in ra.items():
        ob, sb = rb[k]
        if not same or size != sb:
            same = False
            break
        for pos in range(0, size, window):
            n = min(window, size - pos)
            if os.pread(fa, n, off + pos) != os.pread(fb, n, ob + pos):
                same = False
                break
    sys.exit(0 if same else 1)
""")

_NUMPY = _RANGES + textwrap.dedent("""
    import numpy as np
    ma, mb = np.memmap(a, dtype=np.uint8, mode='r'), np.memmap(b, dtype=np.uint8, mode='r')
    same = ra.keys() == rb.keys()
    for k, (off, size) in ra.items():
        if not same:
            break
        ob, sb = rb[k]
        same = size == sb and np.array_equal(ma[off:off + size], mb[ob:ob + sb])
    sys.exit(0 if same else 1)
""")

_TORCH = textwrap.dedent("""
    import sys, torch
    a = torch.load(sys.argv[1], map_location='cpu', weights_only=True)
    b = torch.load(sys.argv[2], map_location='cpu', weights_only=True)
    equal = a.keys() == b.keys()
    for k in a.keys() & b.keys():
        x, y = a[k], b[k]
        if x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y):
            continue
        equal = False
        x64, y64 = x.double().flatten(), y.double().flatten()
        d = (x64 - y64).abs()
        stats = (d.max().item(), d.mean().item(), (d.norm() / x64.norm()).item(),
                 torch.nn.functional.cosine_similarity(x64, y64, dim=0).item(),
                 int((~torch.isclose(x64, y64)).sum()))
    sys.exit(0 if equal else 1)
""")


# Does torch pay for the numeric work? The same statistics on one changed tensor pair, numpy vs torch.
_KERNEL = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ckpttool.io import open_checkpoint
    from ckpttool.ops.diff.values import numeric_stats
    a = open_checkpoint(Path(sys.argv[1])).state_dict()
    c = open_checkpoint(Path(sys.argv[2])).state_dict()
    keys = [k for k in a if a[k].nbytes >= 16 << 20][:4]
    t = time.perf_counter()
    for k in keys:
        numeric_stats(a[k], c[k], 1e-5, 1e-8)
    t_np = time.perf_counter() - t
    t = time.perf_counter()
    import torch
    t_import = time.perf_counter() - t
    t = time.perf_counter()
    for k in keys:
        x, y = a[k].to_torch().double().flatten(), c[k].to_torch().double().flatten()
        d = (x - y).abs()
        (d.max().item(), d.mean().item(), (d.norm() / x.norm()).item(), (x @ y / (x.norm() * y.norm())).item(),
         int((~torch.isclose(x, y)).sum()))
    t_torch = time.perf_counter() - t
    mib = sum(a[k].nbytes for k in keys) / 2**20
    print(f"{mib:.0f} MiB of changed tensors: numpy chunked {t_np:.2f} s; torch whole-tensor {t_torch:.2f} s "
          f"(+ {t_import:.2f} s to import torch, {torch.get_num_threads()} threads)")
""")


def _run(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit status of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, proc.returncode


def _best(cmd: list[str], repeat: int) -> tuple[float, float, int]:
    runs = [_run(cmd) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs), runs[-1][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ckpttool_diff_bench"))
    parser.add_argument("--keep", action="store_true", help="keep the files (and reuse them next time)")
    parser.add_argument("--skip-torch", action="store_true", help="skip the naive torch contender")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    a, a2, b, c = (args.dir / f"{n}.pt" for n in ("a", "a_copy", "b_quarter", "c_all"))
    if not all(p.exists() for p in (a, a2, b, c)):
        print(f"building 4 x {args.size_gb:g} GB checkpoints in {args.dir} ...", file=sys.stderr)
        subprocess.run([PY, "-c", _MAKE, str(args.size_gb), str(a), str(a2), str(b), str(c)], check=True)
    ckpttool = [PY, "-m", "ckpttool", "diff"]
    contenders = {
        "pread 16 MiB windows, bytes == (tensor data)": lambda x, y: [PY, "-c", _PREAD, str(x), str(y)],
        "numpy memmap array_equal (tensor data)": lambda x, y: [PY, "-c", _NUMPY, str(x), str(y)],
        "torch.load both + compare": lambda x, y: [PY, "-c", _TORCH, str(x), str(y)],
        "ckpttool diff --json": lambda x, y: [*ckpttool, str(x), str(y), "--json"],
    }
    if args.skip_torch:
        contenders.pop("torch.load both + compare")
    pairs = {"identical": (a, a2), "25% tensors changed": (a, b), "all tensors changed": (a, c)}
    gib = a.stat().st_size / 2**30
    t_torch = _best([PY, "-c", "import torch"], args.repeat)[0]
    t_numpy = _best([PY, "-c", "import numpy, ml_dtypes"], args.repeat)[0]
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nfiles: 2 x {gib:.2f} GiB torch zip; best of {args.repeat} warm runs; peak RSS of the child process; "
          f"{os.cpu_count()} CPUs, load average {load} at start\n")
    print("| case | contender | time (s) | peak RSS (MiB) | exit |")
    print("|---|---|---:|---:|---:|")
    for case, (x, y) in pairs.items():
        for name, make in contenders.items():
            if case != "identical" and name.startswith(("pread", "numpy")):
                continue  # byte comparisons stop at the first difference: no figures to compare
            wall, rss, rc = _best(make(x, y), args.repeat)
            print(f"| {case} | {name} | {wall:.2f} | {rss:.0f} | {rc} |", flush=True)
    kernel = subprocess.run([PY, "-c", _KERNEL, str(a), str(c)], capture_output=True, text=True, check=True)
    print(f"\nnumeric kernel: {kernel.stdout.strip()}")
    print(f"\nimport cost: `import torch` {t_torch:.2f} s, `import numpy, ml_dtypes` {t_numpy:.2f} s "
          f"(ckpttool diff imports only the latter)")
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
