"""Writing tensors that live on a GPU: copied to the CPU once per storage, ties and views kept.

Skipped without CUDA (CI has none); run on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ckpttool.io.write.checkpoint import write_checkpoint
from ckpttool.ops.convert import convert

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _tree() -> dict:
    torch.manual_seed(0)
    emb = torch.nn.Parameter(torch.randn(10, 4, device="cuda"))
    base = torch.randn(6, 8, device="cuda", dtype=torch.bfloat16)
    return {"model": {"embed.weight": emb, "head.weight": emb, "row": base[2], "t": base.t(),
                      "steps": torch.tensor(5, device="cuda")}, "epoch": 1}


def test_cuda_tensors_written_to_torch_keep_ties_and_views(tmp_path: Path) -> None:
    tree = _tree()
    out = tmp_path / "gpu.pt"
    write_checkpoint(tree, out)
    for mmap in (False, True):
        got = torch.load(out, weights_only=True, mmap=mmap)["model"]
        for key, value in tree["model"].items():
            assert got[key].device.type == "cpu" and got[key].stride() == value.stride()
            assert torch.equal(got[key], value.detach().cpu()), key
        assert got["embed.weight"] is got["head.weight"]
        assert got["row"].untyped_storage().data_ptr() == got["t"].untyped_storage().data_ptr()


def test_cuda_saved_checkpoint_converts_both_ways(tmp_path: Path) -> None:
    tree = _tree()
    src = tmp_path / "cuda_saved.pt"
    torch.save(tree["model"], src)
    st = tmp_path / "m.safetensors"
    result = convert(src, st)
    assert result.aliases == {"head.weight": "embed.weight"}
    loaded = load_file(st)
    assert torch.equal(loaded["t"], tree["model"]["t"].cpu())
    back = tmp_path / "back.pt"
    convert(st, back)
    got = torch.load(back, weights_only=True)
    assert all(torch.equal(got[k], v.detach().cpu()) for k, v in tree["model"].items())
