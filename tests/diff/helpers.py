"""Helpers for the diff tests: run the CLI in-process, build checkpoints with real torch code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ckpttool.cli import main
from tests.conftest import FIXTURES

__all__ = ["FIXTURES", "run", "run_json", "save", "model1_sd", "torch_stats"]


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """``ckpttool ARGS`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, dict[str, Any]]:
    rc, out, err = run(capsys, "diff", *args, "--json")
    assert rc in (0, 1), err
    return rc, json.loads(out)


def save(obj: Any, path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
    return path


def model1_sd() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURES / "model1_state_dict.pt", weights_only=True)


def torch_stats(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-8) -> dict[str, float]:
    """The figures diff reports, computed the obvious way with torch in float64."""
    wide = torch.complex128 if a.is_complex() or b.is_complex() else torch.float64
    a64, b64 = a.to(wide).flatten(), b.to(wide).flatten()
    mismatched = int((~torch.isclose(a64, b64, rtol=rtol, atol=atol)).sum())
    fin = torch.isfinite(a64) & torch.isfinite(b64)
    a64, b64 = a64[fin], b64[fin]
    d = (a64 - b64).abs()
    out = {"mismatched": mismatched, "finite": int(fin.sum())}
    if d.numel():
        na, nb = a64.abs().pow(2).sum().sqrt(), b64.abs().pow(2).sum().sqrt()
        out.update(max_abs=float(d.max()), mean_abs=float(d.mean()),
                   rel_l2=float(d.pow(2).sum().sqrt() / na) if na > 0 else (0.0 if d.max() == 0 else None),
                   cosine=float((torch.vdot(a64, b64).real if a64.is_complex() else a64 @ b64) / (na * nb))
                   if na > 0 and nb > 0 else (1.0 if na == nb else 0.0))
    return out
