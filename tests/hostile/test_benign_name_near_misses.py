"""The benign names are exact: their neighbours in ``typing``, ``pathlib`` and ``torch.distributed`` stay dangerous.

``typing.Any`` is inert, but ``typing._eval_type(typing.ForwardRef(src))`` evaluates ``src``: the payload
below runs under ``pickle.loads`` (checked), and scan must keep calling it dangerous.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ckpttool.io.pickle.globals_policy import classify
from ckpttool.ops.scan import scan_file
from tests.hostile.hostile_corpus import call, glob, pkl, torch_zip, uni

BENIGN = [
    ("typing", "Any", "data"), ("typing", "List", "data"), ("typing", "Optional", "data"),
    ("typing", "Dict", "data"), ("pathlib", "PosixPath", "data"), ("pathlib._local", "PosixPath", "data"),
    ("argparse", "Namespace", "data"),
    # decoded by the reader (DTensor entries with their placements and mesh): data, not stand-ins
    ("torch.distributed.tensor", "DTensor", "data"), ("torch.distributed.device_mesh", "DeviceMesh", "data"),
    ("torch.distributed.tensor.placement_types", "Shard", "data"),
    ("torch.distributed.tensor.placement_types", "Replicate", "data"),
    ("torch.distributed.tensor.placement_types", "Partial", "data"),
    ("omegaconf.dictconfig", "DictConfig", "stub"), ("omegaconf.nodes", "AnyNode", "stub"),
]
NEAR_MISSES = [
    ("typing", "get_type_hints"), ("typing", "ForwardRef"), ("typing", "_eval_type"), ("typing", "NamedTuple"),
    ("typing", "Any.__class__"), ("typing", "Anything"), ("typing", "sys.modules"),
    ("pathlib._local", "os.system"), ("pathlib", "Path.read_text"), ("pathlib._local", "Path.write_text"),
    ("torch.distributed.tensor", "DTensor.from_local"), ("torch.distributed.device_mesh", "init_device_mesh"),
    ("torch.distributed", "rpc.remote"), ("torch.distributed.rpc", "rpc_sync"),
    ("torch.distributed.tensor", "distribute_module"), ("torch.distributed.tensor.placement_types", "os.system"),
]


@pytest.mark.parametrize(("module", "name", "kind"), BENIGN, ids=lambda v: str(v))
def test_benign_names_by_exact_name(module: str, name: str, kind: str) -> None:
    assert classify(module, name) == kind


@pytest.mark.parametrize(("module", "name"), NEAR_MISSES, ids=lambda v: str(v))
def test_neighbours_of_benign_names_stay_dangerous(module: str, name: str) -> None:
    assert classify(module, name) == "dangerous"


def _forward_ref_payload(marker: Path) -> bytes:
    src = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return pkl(call(glob("typing", "_eval_type"), call(glob("typing", "ForwardRef"), uni(src)), b"}", b"}"))


def test_typing_payload_is_live_and_scans_dangerous(tmp_path: Path) -> None:
    live = tmp_path / "live-marker"
    pickle.loads(_forward_ref_payload(live))  # proves the payload runs when unpickled for real
    assert live.exists()
    marker = tmp_path / "scan-marker"
    path = tmp_path / "typing_payload.pt"
    path.write_bytes(torch_zip({"archive/data.pkl": _forward_ref_payload(marker)}))
    result = scan_file(path)
    assert not marker.exists()
    assert result.status == "dangerous"
    assert {"typing._eval_type", "typing.ForwardRef"} <= set(result.dangerous)
