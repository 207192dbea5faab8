"""remap and extract-ema meet entries they cannot write: refused with exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import run_cli


def _training_dict(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    weight = torch.randn(3)
    quantized = torch.quantize_per_tensor(torch.randn(4, 3), 0.1, 3, torch.quint8)
    path = tmp_path / "train.pt"
    torch.save({"model": {"w": weight, "q": quantized}, "ema": {"w": weight * 0.9, "q": quantized}, "epoch": 3},
               path)
    return path


def test_extract_ema_refuses_a_quantized_entry(tmp_path: Path) -> None:
    src = _training_dict(tmp_path)
    out = tmp_path / "ema.safetensors"
    proc = run_cli("extract-ema", src, "-o", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "'q'" in proc.stderr and "quantized" in proc.stderr and not out.exists()


def test_remap_refuses_to_rewrite_a_quantized_entry(tmp_path: Path) -> None:
    src = _training_dict(tmp_path)
    out = tmp_path / "renamed.pt"
    proc = run_cli("remap", src, "-o", out, "--add-prefix", "net.")
    assert proc.returncode == 2 and "quantized" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
