"""Benchmark helpers: synthetic transformer-like checkpoints outside the repo, timed child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(os.environ.get("CKPTTOOL_BENCH_DIR", Path(tempfile.gettempdir()) / "ckpttool-bench"))


def transformer_state_dict(total_bytes: int, layers: int = 250, dtype: str = "float32") -> dict:
    """About ``total_bytes`` of weights in ``layers * 12`` tensors, shaped like a transformer."""
    import torch

    itemsize = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    d = max(8, int((total_bytes / itemsize / layers / 12) ** 0.5))
    sd = {}
    for i in range(layers):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"attn.{name}.weight"] = torch.empty(d, d, dtype=getattr(torch, dtype))
            sd[p + f"attn.{name}.bias"] = torch.empty(d, dtype=getattr(torch, dtype))
        sd[p + "mlp.up.weight"] = torch.empty(4 * d, d, dtype=getattr(torch, dtype))
        sd[p + "mlp.down.weight"] = torch.empty(d, 4 * d, dtype=getattr(torch, dtype))
        sd[p + "ln1.weight"] = torch.ones(d, dtype=getattr(torch, dtype))
        sd[p + "ln1.bias"] = torch.zeros(d, dtype=getattr(torch, dtype))
    return sd


def make_checkpoint(name: str, total_bytes: int, fmt: str = "pt") -> Path:
    """Build (once) a synthetic checkpoint of about ``total_bytes`` in BENCH_DIR."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"{name}.{fmt}"
    if path.exists():
        return path
    sd = transformer_state_dict(total_bytes)
    tmp = path.with_suffix(".partial")
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(tmp))
    else:
        import torch

        torch.save(sd, tmp)
    tmp.rename(path)
    return path


def timed(cmd: list[str], repeat: int = 3) -> tuple[float, int]:
    """Best wall time in seconds over ``repeat`` runs, and peak RSS (KiB) of the child."""
    best = float("inf")
    peak = 0
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        best = min(best, time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise RuntimeError(f"{cmd} failed with {status}")
        peak = max(peak, usage.ru_maxrss)
    return best, peak


def ckpttool_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ckpttool", *args]
