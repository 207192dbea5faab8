"""Every fixture reads exactly as torch reads it: same tensors, paths, shapes, dtypes and bytes."""

from __future__ import annotations

import json

import pytest
import torch

import ckpttool
from ckpttool.ops.inspect import all_tensors
from tests.conftest import FIXTURES, run_cli
from tests.oracle import digest, torch_load, torch_tensors

# files whose tensors are not all plain: checked part by part in tests/tensors/test_nothing_dropped.py
COMPOSITE_FIXTURES = ("quantized.pt", "quantized_modules.pt", "sparse_nested.pt", "dtensor_fsdp2.pt",
                      "tensor_subclasses.pt", "torchao_weights.pt")

TRUSTED = sorted(
    p.name for p in FIXTURES.iterdir()
    if p.suffix in (".pt", ".pth", ".ckpt", ".tar", ".safetensors", ".bin")
    and p.name not in ("malicious_reduce.pt", "truncated.pt", "model1_torchscript.pt")
    and p.name not in COMPOSITE_FIXTURES
    and not p.name.endswith(".safetensors")
)


GPU_TRUSTED = sorted(
    str(p.relative_to(FIXTURES)) for p in (FIXTURES / "gpu").rglob("*")
    if p.is_file() and p.suffix in (".pt", ".pth", ".ckpt", ".tar", ".bin")
    and p.name not in ("training_args.bin",)
)


@pytest.mark.parametrize("name", TRUSTED + GPU_TRUSTED)
def test_every_tensor_agrees_with_torch_load(name: str) -> None:
    theirs = torch_tensors(torch_load(FIXTURES / name))
    ours = dict(all_tensors(ckpttool.open(FIXTURES / name).tree))
    assert set(ours) == set(theirs)
    for path, ref in ours.items():
        t = theirs[path]
        assert list(ref.shape) == list(t.shape), path
        assert f"torch.{ref.dtype}" == str(t.dtype), path
        assert ref.digest() == digest(t), path


@pytest.mark.parametrize("name", ["model1_state_dict.safetensors", "dtypes_zoo.safetensors"])
def test_safetensors_agree_with_safetensors_library(name: str) -> None:
    from safetensors.torch import load_file

    theirs = load_file(FIXTURES / name)
    ours = ckpttool.open(FIXTURES / name).state_dict()
    assert set(ours) == set(theirs)
    for key, ref in ours.items():
        assert ref.dtype == str(theirs[key].dtype).removeprefix("torch.")
        assert ref.digest() == digest(theirs[key])


def test_torchscript_state_dict_matches_scripted_module() -> None:
    module = torch.jit.load(str(FIXTURES / "model1_torchscript.pt"), map_location="cpu")
    theirs = module.state_dict()
    ours = ckpttool.open(FIXTURES / "model1_torchscript.pt").state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].digest() == digest(v) for k, v in theirs.items())
    assert ours.parameters == {k for k, _ in module.named_parameters()}


def test_inspect_json_keys_shapes_dtypes_match_state_dict_order() -> None:
    proc = run_cli("inspect", FIXTURES / "model1_train.pt", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    model = torch_load(FIXTURES / "model1_train.pt")["model"]
    expected = model.state_dict()
    tensors = report["sections"]["model"]["tensors"]
    assert list(tensors) == list(expected)
    for key, t in expected.items():
        assert tensors[key]["shape"] == list(t.shape)
        assert tensors[key]["dtype"] == str(t.dtype).removeprefix("torch.")
        assert tensors[key]["nbytes"] == t.numel() * t.element_size()
    assert report["layout"] == "yolov5"
    assert report["meta"]["epoch"] == 4
    assert report["sections"]["optimizer"]["type"] == "SGD"


def test_cuda_tagged_storages_read_on_cpu() -> None:
    ckpt = ckpttool.open(FIXTURES / "cuda_tagged.pt")
    refs = [t for _, t in all_tensors(ckpt.tree)]
    assert refs and all(t.storage.location.startswith("cuda") for t in refs)
    theirs = torch.load(FIXTURES / "cuda_tagged.pt", map_location="cpu", weights_only=True)
    for key, ref in ckpt.state_dict().items():
        assert ref.digest() == digest(theirs[key])
