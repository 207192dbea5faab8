"""The core invariant: every tensor torch loads from a fixture is a tensor ckpttool lists.

For every torch checkpoint among the fixtures (fixtures/ and fixtures/gpu/), the tensors that
``torch.load(weights_only=False)`` builds, walked down to the inner tensors of quantized, sparse,
nested, DTensor and subclass tensors, are exactly (as a multiset of dtype, shape and sha256 of the
bytes) the plain tensors and composite parts ckpttool finds in the same file.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import torch

import ckpttool
from ckpttool.io.tensor_findings import composite_entries
from ckpttool.ops.inspect import all_tensors
from tests.conftest import FIXTURES
from tests.tensors.torch_walk import Signature, fixture_classes, torch_tensors

_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar", ".bin")
# never loaded unsafely (it runs a command), or not a whole checkpoint
_NEVER = {"malicious_reduce.pt", "truncated.pt"}


def _fixture_files() -> list[Path]:
    files = [p for p in sorted(FIXTURES.rglob("*")) if p.is_file() and p.name.endswith(_SUFFIXES)
             and p.name not in _NEVER and ".venv" not in p.parts]
    return files


def _ckpttool_tensors(path: Path) -> list[Signature]:
    ckpt = ckpttool.open(path)
    refs = [t for _, t in all_tensors(ckpt.tree)]
    refs += [p for _, entry in composite_entries(ckpt.tree) for p in entry.parts.values()]
    unique = {id(t): t for t in refs}  # a part two entries share (a DTensor's mesh) is one tensor
    return [(t.dtype, t.shape, t.digest()) for t in unique.values()]


def _torch_load(path: Path, tmp_path: Path) -> object:
    cwd = os.getcwd()
    os.chdir(tmp_path)  # whatever a fixture's pickle might do, it does it in a throwaway folder
    try:
        with fixture_classes():
            return torch.load(path, weights_only=False, map_location="cpu")
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_tensor_torch_loads_is_listed(path: Path, tmp_path: Path) -> None:
    try:
        loaded = _torch_load(path, tmp_path)
    except ModuleNotFoundError as exc:  # a pickled class of a code base that is not installed
        pytest.skip(f"torch cannot load it here: {exc}")
    if isinstance(loaded, torch.jit.ScriptModule):
        pytest.skip("a TorchScript archive (its state_dict is checked in tests/foundation)")
    expected = Counter(torch_tensors(loaded))
    got = Counter(_ckpttool_tensors(path))
    assert got == expected, {"missing": expected - got, "extra": got - expected}


def test_the_walk_covers_every_tensor_kind() -> None:
    """The fixtures the invariant runs on hold each kind of tensor torch 2.13 saves."""
    kinds: set[str] = set()
    for name in ("quantized.pt", "quantized_modules.pt", "sparse_nested.pt", "dtensor_fsdp2.pt",
                 "tensor_subclasses.pt", "torchao_weights.pt"):
        ckpt = ckpttool.open(FIXTURES / name)
        kinds |= {e.kind for _, e in composite_entries(ckpt.tree)}
    assert kinds >= {"quantized", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc", "nested",
                     "dtensor", "subclass", "torchao"}
