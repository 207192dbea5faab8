"""The mapping helpers: torch-ema shadows by position, LitEma names without dots, the publish copy."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ckpttool
from ckpttool.layouts.base import as_state_dict
from ckpttool.layouts.ema_packages import _unique_embedding
from ckpttool.layouts.stable_diffusion import map_litema
from ckpttool.model import StateDict, Stub
from ckpttool.ops.ema.publish import plain_copy


@pytest.mark.parametrize(("needle", "hay", "want"), [
    ([(2,), (3,)], [(2,), (9,), (3,)], [0, 2]),
    ([(2,), (3,)], [(2,), (2,), (3,)], None),  # two ways: refuse
    ([(4,)], [(3,)], None),  # no way
    ([], [(1,)], []),
    ([(1,), (1,)], [(1,), (1,)], [0, 1]),
])
def test_unique_embedding(needle, hay, want) -> None:
    assert _unique_embedding(needle, hay) == want


def _sd(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> StateDict:
    torch.save(tensors, tmp_path / "sd.pt")
    sd = as_state_dict(ckpttool.open(tmp_path / "sd.pt").tree)
    assert sd is not None
    return sd


def test_litema_maps_back_through_the_tracked_module(tmp_path: Path) -> None:
    sd = _sd(tmp_path, {"first.w": torch.ones(1), "model.a.0.w": torch.ones(2), "model.a.1.w": torch.ones(3),
                        "model_ema.decay": torch.tensor(0.9), "model_ema.num_updates": torch.tensor(3),
                        "model_ema.a0w": torch.zeros(2), "model_ema.a1w": torch.zeros(3)})
    m = map_litema(sd, "model_ema.")
    assert m.ok and m.model_prefix == "model." and list(m.tensors) == ["model.a.0.w", "model.a.1.w"]


def test_litema_under_another_name_finds_its_module(tmp_path: Path) -> None:
    sd = _sd(tmp_path, {"unet.in.0.w": torch.ones(2), "ema.decay": torch.tensor(0.9),
                        "ema.num_updates": torch.tensor(1), "ema.in0w": torch.zeros(2)})
    m = map_litema(sd, "ema.")
    assert m.ok and list(m.tensors) == ["unet.in.0.w"]


def test_litema_shape_and_unknown_names_are_problems(tmp_path: Path) -> None:
    sd = _sd(tmp_path, {"model.a.w": torch.ones(2), "model_ema.decay": torch.tensor(0.9),
                        "model_ema.num_updates": torch.tensor(1), "model_ema.aw": torch.zeros(5)})
    assert "shape" in map_litema(sd, "model_ema.").problems[0]
    sd = _sd(tmp_path, {"model.a.w": torch.ones(2), "model_ema.decay": torch.tensor(0.9),
                        "model_ema.num_updates": torch.tensor(1), "model_ema.zzz": torch.zeros(2)})
    assert not map_litema(sd, "model_ema.").ok


def test_plain_copy_keeps_order_tuples_sharing_and_flattens_stubs() -> None:
    module = Stub("pkg.Net")
    module.state = {"_parameters": OrderedDict(), "_buffers": OrderedDict(), "_modules": OrderedDict()}
    other = Stub("argparse.Namespace")
    other.state = {"lr": 0.1}
    shared = [1, 2]
    tree = {"b": 1, "a": {"betas": (0.9, (0.99, 0.999))}, "net": module, "args": other, "x": shared, "y": shared}
    out, notes = plain_copy(tree)
    assert list(out) == ["b", "a", "net", "args", "x", "y"]
    assert out["a"]["betas"] == (0.9, (0.99, 0.999)) and isinstance(out["a"]["betas"][1], tuple)
    assert out["args"] == {"lr": 0.1} and out["net"] == OrderedDict()
    assert out["x"] is out["y"] and out["x"] == [1, 2] and out["x"] is not shared
    assert any("pkg.Net" in n for n in notes) and any("argparse.Namespace" in n for n in notes)


@pytest.mark.parametrize(("name", "layout", "source", "n"), [
    ("sd_ema.ckpt", "stable-diffusion", "state_dict.model_ema.*", 16),
    ("ema_pytorch.pt", "training-dict", "ema.ema_model.*", 9),
    ("torch_ema.pt", "training-dict", "ema.shadow_params", 6),
])
def test_layouts_expose_the_package_ema_under_model_keys(name: str, layout: str, source: str, n: int) -> None:
    from tests.conftest import FIXTURES

    ckpt = ckpttool.open(FIXTURES / name)
    assert ckpt.layout == layout and ckpt.section("ema").source == source
    ema, model = ckpt.state_dict("ema"), ckpt.state_dict("model")
    assert len(ema) == n and set(ema) <= set(model)  # the model section stays what the module loads


def _all_embeddings(needle: list[int], hay: list[int]) -> list[tuple[int, ...]]:
    from itertools import combinations

    return [c for c in combinations(range(len(hay)), len(needle)) if [hay[i] for i in c] == needle]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3), max_size=7), st.lists(st.integers(1, 3), max_size=4))
def test_unique_embedding_agrees_with_brute_force(hay: list[int], needle: list[int]) -> None:
    ways = _all_embeddings(needle, hay)
    got = _unique_embedding([(n,) for n in needle], [(h,) for h in hay])
    assert got == (list(ways[0]) if len(ways) == 1 else None)


def test_extract_ema_never_imports_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import FIXTURES

    code = ("import sys; from ckpttool.cli import main\n"
            f"rc = main(['extract-ema', {str(FIXTURES / 'mmengine_epoch_2.pth')!r}, '-o', "
            f"{str(tmp_path / 'e.safetensors')!r}, '--json'])\n"
            "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_library_api_without_the_cli(tmp_path: Path) -> None:
    from safetensors import safe_open

    from ckpttool.ops.ema import ema_state_dict, extract_ema, list_ema
    from tests.conftest import FIXTURES

    ckpt = ckpttool.open(FIXTURES / "timm_checkpoint.pth.tar")
    assert [c.source for c in list_ema(ckpt).candidates] == ["state_dict_ema"]
    result = extract_ema(ckpt, tmp_path / "e.safetensors")
    assert result.ok and result.written and result.to_dict()["schema_version"] == 1
    with safe_open(str(tmp_path / "e.safetensors"), "np") as f:
        assert f.metadata()["ckpttool.ema_source"] == "state_dict_ema"
    sd = ema_state_dict(ckpt)
    assert list(sd) == list(ckpt.state_dict("model")) and sd["fc.weight"] is ckpt.state_dict("ema")["fc.weight"]
    with pytest.raises(ckpttool.CkptError, match="no EMA weights"):
        list_ema(ckpttool.open(FIXTURES / "model1_state_dict.pt"))
