"""The safe pickle VM against the C unpickler, on the files where it does the most work.

Run: ``python bench/vm_bench.py [--before SRC] [--repeat 3]``. Three files written by real torch
code are built once in $CKPTTOOL_BENCH_DIR (default /tmp/ckpttool-bench), never in the repository:

- a training checkpoint: 5,000 parameters, their Adam state (20,000 tensors in all) and param groups;
- a whole ``nn.Module`` pickled by ``torch.save(model)``: 3,000 submodules;
- a DCP ``.metadata`` with 100,000 chunk entries, read through the safe VM (the C-unpickler fast
  path is switched off with ``CKPTTOOL_SAFE_VM_ONLY``).

For each file it times, as separate processes (best of ``--repeat``, peak RSS of the child):
``ckpttool.open()`` in-process (the VM plus the layout work), ``ckpttool inspect --json`` as a whole
command, and the C-unpickler route (``torch.load(weights_only=True, mmap=True)``, or
``weights_only=False`` for the pickled module, or ``FileSystemReader.read_metadata()``).
``--before SRC`` adds the same in-process and command timings with ``SRC`` (a copy of an older
``ckpttool`` source tree) first on ``sys.path``, so the speed-up is measured in the same run.
Last, the Python heap kept per chunk entry after reading the 100k-entry ``.metadata`` (tracemalloc),
against its on-disk bytes per entry.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, timed
from dcp_bench import metadata_100k

OPEN = ("import sys, time; import ckpttool; t = time.perf_counter(); c = ckpttool.open(sys.argv[1]); "
        "print(time.perf_counter() - t)")
TORCH_LOAD = ("import sys, time, torch; t = time.perf_counter(); "
              "torch.load(sys.argv[1], mmap=True, weights_only=sys.argv[2] == 'safe'); "
              "print(time.perf_counter() - t)")
READ_METADATA = ("import sys, time; from torch.distributed.checkpoint import FileSystemReader; "
                 "t = time.perf_counter(); FileSystemReader(sys.argv[1]).read_metadata(); "
                 "print(time.perf_counter() - t)")
HEAP = """
import sys, tracemalloc
from pathlib import Path
from ckpttool.io.formats.dcp_metadata import read_metadata
tracemalloc.start()
md = read_metadata(Path(sys.argv[1]))
kept, peak = tracemalloc.get_traced_memory()
print(kept, peak)
"""


def training_checkpoint(path: Path, params: int = 5000) -> Path:
    if not path.exists():
        import torch

        torch.manual_seed(0)
        weights = [torch.nn.Parameter(torch.randn(8)) for _ in range(params)]
        opt = torch.optim.Adam(weights, lr=1e-3)
        for w in weights:
            w.grad = torch.ones_like(w)
        opt.step()
        sd = {f"model.blocks.{i // 4}.p{i % 4}": w.detach() for i, w in enumerate(weights)}
        torch.save({"model": sd, "optimizer": opt.state_dict(), "epoch": 3, "step": 1000},
                   path.with_suffix(".partial"))
        path.with_suffix(".partial").rename(path)
    return path


def pickled_module(path: Path, blocks: int = 1000) -> Path:
    if not path.exists():
        import torch

        layers = []
        for _ in range(blocks):  # three submodules per block
            layers += [torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.ReLU()]
        torch.save(torch.nn.Sequential(*layers), path.with_suffix(".partial"))
        path.with_suffix(".partial").rename(path)
    return path


def in_process(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, int]:
    """Best in-process time the child prints, and its peak RSS (KiB)."""
    best, peak = float("inf"), 0
    for _ in range(repeat):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{cmd} failed")
        best = min(best, float(out.split()[-1]))
        peak = max(peak, usage.ru_maxrss)
    return best, peak


def whole(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, int]:
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return timed(cmd, repeat)
    finally:
        os.environ.clear()
        os.environ.update(old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", help="an older ckpttool source tree to time in the same run")
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    bench = BENCH_DIR.resolve()
    train, module, meta = bench / "vm-train-5k.pt", bench / "vm-module-3k.pt", bench / "dcp-100k-entries"
    if args.build:
        training_checkpoint(train)
        pickled_module(module)
        metadata_100k(meta)
        return
    # built in a child: a process that imported torch hands its peak RSS on to every child it forks
    subprocess.run([py, __file__, "--build"], check=True)
    os.chdir(bench)  # ``python -c`` puts the working directory first on sys.path: not the repository
    files = [("training .pt (20k tensors + Adam)", train,
              [py, "-c", TORCH_LOAD, "", "safe"], "torch.load(weights_only=True, mmap=True)"),
             ("pickled nn.Module (3k submodules)", module,
              [py, "-c", TORCH_LOAD, "", "unsafe"], "torch.load(weights_only=False, mmap=True)"),
             ("DCP .metadata (100k chunks, safe VM)", meta,
              [py, "-c", READ_METADATA, ""], "FileSystemReader.read_metadata()")]
    trees = [("after", None)] + ([("before", args.before)] if args.before else [])
    print("| file | tree | open() in-process (s) | RSS (MiB) | inspect --json (s) | RSS (MiB) "
          "| C route | C route (s) | RSS (MiB) | open / C route |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
    results: dict[tuple[str, str], float] = {}
    for what, path, base_cmd, base_name in files:
        base_cmd[3] = str(path)
        base = in_process(base_cmd, dict(os.environ), args.repeat)
        for tree, src in trees:
            env = dict(os.environ, CKPTTOOL_SAFE_VM_ONLY="1")
            if src:
                env["PYTHONPATH"] = src
            t_open = in_process([py, "-c", OPEN, str(path)], env, args.repeat)
            t_cmd = whole([py, "-m", "ckpttool", "inspect", str(path), "--json"], env, args.repeat)
            results[(what, tree)] = t_open[0]
            print(f"| {what} | {tree} | {t_open[0]:.2f} | {t_open[1] / 1024:.0f} | {t_cmd[0]:.2f} | "
                  f"{t_cmd[1] / 1024:.0f} | {base_name} | {base[0]:.2f} | {base[1] / 1024:.0f} | "
                  f"{t_open[0] / base[0]:.2f}x |")
    if args.before:
        print()
        for what, *_ in files:
            print(f"- {what}: open() after / before = "
                  f"{results[(what, 'after')] / results[(what, 'before')]:.2f}x")
    disk = (meta / ".metadata").stat().st_size
    print(f"\n100k-entry .metadata: {disk / 100_000:.0f} bytes per chunk entry on disk")
    for tree, src in trees:
        env = dict(os.environ, CKPTTOOL_SAFE_VM_ONLY="1")
        if src:
            env["PYTHONPATH"] = src
        out = subprocess.run([py, "-c", HEAP, str(meta)], env=env, capture_output=True, check=True, text=True)
        kept, peak = map(int, out.stdout.split())
        print(f"- {tree}: heap kept after read_metadata {kept / 100_000:.0f} bytes per entry "
              f"({kept / disk:.1f}x on-disk), peak while reading {peak / 100_000:.0f} bytes per entry "
              f"({peak / disk:.1f}x)")


if __name__ == "__main__":
    main()
