"""Benchmark: what the progress bar costs, drawn on a terminal, against ``--no-progress``.

Builds a synthetic fp32 checkpoint (default 1 GiB, outside the repo) and runs each command twice
as fresh child processes in the same run: once with stderr on a pseudo-terminal and the bar's
delay set to 0 (``CKPTTOOL_PROGRESS_DELAY=0``, so it is drawn from the first byte to the last),
once with ``--no-progress``. Prints a markdown table: best wall time, ratio to ``--no-progress``,
peak RSS of the child, and whether the bar was seen on the terminal.

    python bench/progress_bench.py [--gb 1] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import pty
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH_DIR, ckpttool_cmd


def on_terminal(argv: list[str]) -> tuple[float, int, bytes]:
    """Wall time, peak RSS (KiB) and what reached the terminal, of one child with stderr on a pty."""
    master, slave = pty.openpty()
    seen: list[bytes] = []

    def drain() -> None:  # the child must never block on a full terminal buffer
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = {**os.environ, "CKPTTOOL_PROGRESS_DELAY": "0", "COLUMNS": "100"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    reader.join(timeout=5)
    os.close(master)
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{argv} failed: {b''.join(seen)[-2000:]!r}")
    return wall, usage.ru_maxrss, b"".join(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    # built in a child: a parent's peak RSS would be carried over to every child's ru_maxrss
    src = Path(subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                               "from common import make_checkpoint; "
                               "print(make_checkpoint(sys.argv[2], int(float(sys.argv[3]) * (1 << 30))))",
                               str(Path(__file__).resolve().parent), f"progress_{args.gb:g}gb", str(args.gb)],
                              check=True, capture_output=True, text=True).stdout.strip())
    out = BENCH_DIR / "progress_out"
    cases = {
        "convert .pt → safetensors": lambda: ["convert", str(src), "-o", str(out / "m.safetensors"), "--force"],
        "convert → shard set, --jobs 2": lambda: ["convert", str(src), "-o", str(out / "shards"),
                                                  "--max-shard-size", "256MB", "--jobs", "2", "--force"],
        "convert → DCP": lambda: ["convert", str(src), "-o", str(out / "dcp"), "--force"],
        "diff (file against itself)": lambda: ["diff", str(src), str(src)],
    }
    print(f"{args.gb:g} GiB fp32 checkpoint, best of {args.repeat}, load {os.getloadavg()[0]:.1f}\n")
    print("| command | bar drawn | --no-progress | ratio | peak RSS bar / none | bar seen |")
    print("|---|---|---|---|---|---|")
    for name, build in cases.items():
        best = {True: (float("inf"), 0), False: (float("inf"), 0)}
        drawn = False
        for _ in range(args.repeat):
            for bar in (True, False):
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                wall, rss, seen = on_terminal(ckpttool_cmd(*build(), *(() if bar else ("--no-progress",))))
                best[bar] = (min(best[bar][0], wall), max(best[bar][1], rss))
                drawn = drawn or (bar and "\u2501".encode() in seen)
        (tb, rb), (tn, rn) = best[True], best[False]
        print(f"| {name} | {tb:.2f} s | {tn:.2f} s | {tb / tn:.3f} | {rb >> 10} / {rn >> 10} MiB | {drawn} |")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
