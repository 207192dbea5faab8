"""Files built to exhaust whoever loads them are ``suspicious`` (exit 1), though ckpttool reads them safely.

The hand-built traps of tests/malformed are scanned for their status and finding code; for one of
each kind, real torch shows what the file does to a loader (a crash, a 2**60-node structure, a list
that contains itself, a record that inflates 1000-fold), and normal shapes (cycles through pickled
modules, memo sharing of tied weights) stay clean.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from ckpttool.ops.scan import scan_file
from tests.conftest import FIXTURES, ROOT, run_cli
from tests.hostile.hostile_corpus import torch_zip
from tests.malformed.malformed_files import _dag, crafted

CRAFTED = {c.name: c for c in crafted()}
SUSPICIOUS = {
    "deep_list": "resource.deep-nesting", "deep_dict": "resource.deep-nesting",
    "deep_stub_state": "resource.deep-nesting", "deep_tuple_as_dict_key": "resource.deep-nesting",
    "deep_tuple_in_set": "resource.deep-nesting", "deep_tuple_by_builtins_tuple": "resource.deep-nesting",
    "memo_dag_lists_2_60": "resource.memo-explosion", "memo_dag_dicts_2_60": "resource.memo-explosion",
    "memo_dag_tuples_2_60": "resource.memo-explosion", "memo_dag_tuple_as_dict_key": "resource.memo-explosion",
    "memo_dag_tuples_in_builtins_set": "resource.memo-explosion",
    "cycle_list": "resource.self-containing", "cycle_dict": "resource.self-containing",
    "zip_bomb_real_1000_to_1": "resource.zip-bomb", "zip_bomb_declared_1tb": "resource.zip-bomb",
    "zip_inflates_past_declared": "resource.zip-bomb",
    "int_of_65536_bytes": "resource.limit",
    "zip_storage_numel_2_62": "resource.huge-storage", "legacy_storage_numel_2_62": "resource.huge-storage",
}
CLEAN = ["cycle_stub_state", "int_of_1700_bytes_as_value", "nan_and_inf_values", "zip_valid_tensor", "st_valid",
         "zip_extra_member_starting_like_a_pickle"]


def _write(folder: Path, name: str) -> Path:
    path = folder / f"{name}.bin"
    path.write_bytes(CRAFTED[name].data)
    return path


@pytest.mark.parametrize("name", sorted(SUSPICIOUS))
def test_traps_are_suspicious(name: str, tmp_path: Path) -> None:
    result = scan_file(_write(tmp_path, name))
    assert result.status == "suspicious", (result.status, [f.to_dict() for f in result.findings])
    assert SUSPICIOUS[name] in {f.code for f in result.resource_traps}


@pytest.mark.parametrize("name", ["st_header_declares_gigabytes", "st_header_over_100mb_in_file"])
def test_a_header_length_past_the_end_is_unreadable_not_a_trap(name: str, tmp_path: Path) -> None:
    """A length no reader can act on (the file is shorter) is corruption, as random bytes often are."""
    result = scan_file(_write(tmp_path, name))
    assert result.status == "unreadable" and not result.resource_traps, [f.to_dict() for f in result.findings]


@pytest.mark.parametrize("name", CLEAN)
def test_honest_shapes_stay_clean(name: str, tmp_path: Path) -> None:
    result = scan_file(_write(tmp_path, name))
    assert result.status == "clean", [f.to_dict() for f in result.findings]


def _torch(script: str, *args: Path) -> subprocess.CompletedProcess[str]:
    code = "import json, sys, torch\n" + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _scan_cli(path: Path) -> dict[str, object]:
    proc = run_cli("scan", path, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (entry,) = json.loads(proc.stdout)["files"]
    return entry


def test_deep_tuple_key_crashes_torch_and_is_suspicious(tmp_path: Path) -> None:
    """A 1 MB file: a dict keyed by a tuple nested 10**6 deep; hashing it overflows CPython's C stack."""
    path = tmp_path / "deep_key.pt"
    path.write_bytes(torch_zip({"archive/data.pkl": b"\x80\x02}" + b"N" + b"\x85" * 1_000_000 + b"K\x01s."}))
    for weights_only in (True, False):
        proc = _torch(f"torch.load(sys.argv[1], weights_only={weights_only})", path)
        assert proc.returncode < 0, (weights_only, proc.returncode, proc.stderr[-500:])  # killed by a signal
    entry = _scan_cli(path)
    assert entry["status"] == "suspicious" and "resource.deep-nesting" in entry["resource"]


def test_memo_explosion_is_what_torch_builds(tmp_path: Path) -> None:
    path = tmp_path / "dag.pt"
    path.write_bytes(torch_zip({"archive/data.pkl": b"\x80\x02" + _dag("list") + b"."}))
    assert path.stat().st_size < 2048
    proc = _torch("""
        obj, levels = torch.load(sys.argv[1], weights_only=False), 0
        while obj:  # each level holds the level below twice: 2**60 leaves when expanded
            assert len(obj) == 2 and obj[0] is obj[1]
            obj, levels = obj[0], levels + 1
        print(levels)
    """, path)
    assert proc.returncode == 0 and int(proc.stdout) == 60, proc.stderr[-500:]
    entry = _scan_cli(path)
    assert entry["status"] == "suspicious" and entry["resource"] == ["resource.memo-explosion"]


def test_self_containing_list_and_normal_module_cycles(tmp_path: Path) -> None:
    looped = tmp_path / "looped.pt"
    looped.write_bytes(torch_zip({"archive/data.pkl": b"\x80\x02}X\x04\x00\x00\x00loop]q\x00h\x00as."}))
    proc = _torch("x = torch.load(sys.argv[1], weights_only=True)['loop']; print(x[0] is x)", looped)
    assert proc.stdout.strip() == "True", proc.stderr[-500:]
    entry = _scan_cli(looped)
    assert entry["status"] == "suspicious" and entry["resource"] == ["resource.self-containing"]
    # a module whose child keeps a list holding its parent: a cycle through pickled objects, as torch.save writes it
    module = tmp_path / "module.pt"
    proc = _torch("""
        model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
        model[0].owners = [model]
        torch.save(model, sys.argv[1])
        again = torch.load(sys.argv[1], weights_only=False)
        print(again[0].owners[0] is again)
    """, module)
    assert proc.stdout.strip() == "True", proc.stderr[-500:]
    result = scan_file(module)
    assert result.status == "clean", [f.to_dict() for f in result.findings]


def test_deep_nesting_breaks_recursive_tools(tmp_path: Path) -> None:
    path = tmp_path / "deep.pt"
    path.write_bytes(torch_zip({"archive/data.pkl": b"\x80\x02" + b"]" * 20_000 + b"a" * 19_999 + b"."}))
    proc = _torch("""
        import copy
        obj = torch.load(sys.argv[1], weights_only=True)
        for tool in (json.dumps, repr, copy.deepcopy):
            try:
                tool(obj)
                print("survived")
            except RecursionError:
                print("RecursionError")
    """, path)
    assert proc.stdout.split() == ["RecursionError"] * 3, proc.stderr[-500:]
    entry = _scan_cli(path)
    assert entry["status"] == "suspicious" and entry["resource"] == ["resource.deep-nesting"]


def test_deflated_record_torch_reads_is_a_zip_bomb(tmp_path: Path) -> None:
    """torch reads deflated records; 20 MB of zeros in a 20 KB file is still read by inspect, and flagged."""
    import torch

    buf = io.BytesIO()
    torch.save({"z": torch.zeros(5_000_000)}, buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            method = zipfile.ZIP_DEFLATED if "/data/" in info.filename else zipfile.ZIP_STORED
            dst.writestr(info.filename, src.read(info.filename), compress_type=method)
    path = tmp_path / "bomb.pt"
    path.write_bytes(out.getvalue())
    assert path.stat().st_size < 64_000
    assert torch.load(path, weights_only=True)["z"].shape == (5_000_000,)
    entry = _scan_cli(path)
    assert entry["status"] == "suspicious" and entry["resource"] == ["resource.zip-bomb"]
    proc = run_cli("inspect", path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sections"]["model"]["tensors"]["z"]["shape"] == [5_000_000]
    plain = tmp_path / "plain.pt"
    plain.write_bytes(buf.getvalue())
    assert run_cli("diff", path, plain).returncode == 0  # the inflated bytes equal torch's own file


@pytest.mark.parametrize("name", ["model1_train.pt", "lightning.ckpt", "timm_checkpoint.pth.tar", "sd_ema.ckpt",
                                  "model1_state_dict_legacy.pt", "ultralytics_last.pt", "generic_train.pt"])
def test_real_checkpoints_have_no_resource_traps(name: str) -> None:
    """Pickled whole modules, shared tensors (model and EMA), optimizer state: clean, no resource.* finding."""
    result = scan_file(FIXTURES / name)
    assert result.resource_traps == [] and result.status == "clean", [f.to_dict() for f in result.findings]
