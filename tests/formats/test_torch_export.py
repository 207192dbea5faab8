"""torch.export archives (.pt2): ckpttool's listing against torch.export.load, diff, convert, scan."""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ckpttool
from ckpttool.errors import CkptError
from tests.conftest import FIXTURES, run_cli

CONVERTIBLE = ["bn_exported.pt2", "export_zoo.pt2"]
ARCHIVES = [*CONVERTIBLE, "export_dtypes.pt2"]  # every dtype torch 2.13 exports


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


@pytest.fixture(scope="module")
def exported() -> dict[str, torch.export.ExportedProgram]:
    return {name: torch.export.load(FIXTURES / name) for name in ARCHIVES}


@pytest.mark.parametrize("name", ARCHIVES)
def test_weights_and_constants_match_torch_export_load(name, exported):
    ep = exported[name]
    ckpt = ckpttool.open(FIXTURES / name)
    assert ckpt.format == "torch-export" and ckpt.layout == "torch-export"
    for section, expected in (("model", ep.state_dict), ("constants", ep.constants)):
        if not expected:
            assert section not in ckpt.sections
            continue
        sd = ckpt.state_dict(section)
        assert list(sd) == list(expected)
        for key, t in expected.items():
            ref = sd[key]
            assert (ref.dtype, ref.shape, ref.stride) == (_dtype(t), tuple(t.shape), t.stride()), key
            assert ref.digest() == _sha(t), key
    params = {k for k, v in ep.state_dict.items() if isinstance(v, torch.nn.Parameter)}
    assert ckpt.state_dict("model").parameters == params


def test_every_dtype_is_listed_under_torch_s_name(exported):
    sd = ckpttool.open(FIXTURES / "export_dtypes.pt2").state_dict()
    assert [t.dtype for t in sd.values()] == [_dtype(t) for t in exported["export_dtypes.pt2"].state_dict.values()]
    assert len({t.dtype for t in sd.values()}) == 21


def test_aliases_share_one_storage_as_in_torch(exported):
    ep = exported["export_zoo.pt2"]
    assert ep.state_dict["emb.weight"].data_ptr() == ep.state_dict["head.weight"].data_ptr()
    sd = ckpttool.open(FIXTURES / "export_zoo.pt2").state_dict()
    assert sd["emb.weight"].storage is sd["head.weight"].storage
    assert sd["tview"].is_contiguous is False


def test_diff_against_the_state_dict_it_was_exported_from():
    result = run_cli("diff", FIXTURES / "bn_exported.pt2", FIXTURES / "bn_state_dict.pt", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["equal"] is True
    assert sorted(report["identical"]) == sorted(torch.load(FIXTURES / "bn_state_dict.pt", weights_only=True))


def test_diff_finds_a_changed_weight(tmp_path):
    sd = torch.load(FIXTURES / "bn_state_dict.pt", weights_only=True)
    sd["fc.bias"] = sd["fc.bias"] + 1
    torch.save(sd, tmp_path / "changed.pt")
    result = run_cli("diff", FIXTURES / "bn_exported.pt2", tmp_path / "changed.pt", "--json")
    assert result.returncode == 1, result.stderr
    assert [v["key"] for v in json.loads(result.stdout)["value_changed"]] == ["fc.bias"]


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_convert_weights_to_safetensors_bit_for_bit(name, exported, tmp_path):
    out = tmp_path / "w.safetensors"
    result = run_cli("convert", FIXTURES / name, "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    loaded = load_file(out)
    expected = exported[name].state_dict
    meta = json.loads(result.stdout)
    # tied weights are stored once in safetensors, the other name recorded as an alias
    assert set(loaded) | set(meta["aliases"]) == set(expected)
    for key, t in expected.items():
        got = loaded[meta["aliases"].get(key, key)]
        assert got.dtype == t.dtype and got.shape == t.shape and _sha(got) == _sha(t), key
    back = run_cli("diff", FIXTURES / name, out)
    assert back.returncode == 0, back.stdout + back.stderr


def test_convert_to_torch_writes_the_state_dict(exported, tmp_path):
    out = tmp_path / "w.pt"
    assert run_cli("convert", FIXTURES / "export_zoo.pt2", "-o", out).returncode == 0
    loaded = torch.load(out, weights_only=True)
    expected = exported["export_zoo.pt2"].state_dict
    assert list(loaded) == list(expected)
    assert all(_sha(loaded[k]) == _sha(v) for k, v in expected.items())
    assert loaded["emb.weight"].data_ptr() == loaded["head.weight"].data_ptr()


def test_inspect_and_scan_report_the_graph_as_code():
    ckpt = ckpttool.open(FIXTURES / "bn_exported.pt2")
    codes = [f for f in ckpt.findings if f.code == "format.code"]
    assert len(codes) == 1 and "models/model.json" in codes[0].message
    scan = run_cli("scan", FIXTURES / "bn_exported.pt2", "--json")
    files = json.loads(scan.stdout)["files"]
    assert scan.returncode == 1 and files[0]["status"] == "code"
    assert files[0]["code_files"] == ["bn_exported/models/model.json"]
    assert any(f["code"] == "code.export" for f in files[0]["findings"])


# -- hostile and malformed archives, made from a real one ------------------------------------------

def _rewrite(src: Path, dst: Path, edit) -> None:
    """Copy the archive member by member (stored, like torch), letting ``edit`` change members."""
    with zipfile.ZipFile(src) as zin:
        members = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    members = edit(members)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name, data in members.items():
            zout.writestr(name, data)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_opaque_pickle_constant_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt2"

    def edit(m):
        cfg_name = "export_zoo/data/constants/model_constants_config.json"
        cfg = json.loads(m[cfg_name])
        cfg["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                 "tensor_meta": None}
        m[cfg_name] = json.dumps(cfg).encode()
        m["export_zoo/data/constants/opaque_obj_0"] = pickle.dumps(_Payload(marker))
        return m

    _rewrite(FIXTURES / "export_zoo.pt2", hostile, edit)
    scan = run_cli("scan", hostile, "--json", cwd=tmp_path)
    assert scan.returncode == 1
    assert "os.system" in json.loads(scan.stdout)["files"][0]["dangerous"] or \
        "posix.system" in json.loads(scan.stdout)["files"][0]["dangerous"]
    inspect = run_cli("inspect", hostile, cwd=tmp_path)
    assert "system" in inspect.stdout
    assert not marker.exists()


@pytest.mark.parametrize("breakage, message", [
    (lambda cfg: cfg["config"]["fc.weight"].update(path_name="../../etc/passwd"), "leaves its folder"),
    (lambda cfg: cfg["config"]["fc.weight"]["tensor_meta"].update(sizes=[{"as_int": 99}, {"as_int": 8}]),
     "reaches past"),
    (lambda cfg: cfg["config"]["fc.weight"]["tensor_meta"].update(dtype=77), "unknown scalar type"),
    (lambda cfg: cfg["config"]["fc.weight"].update(path_name="weight_99"), "missing"),
])
def test_malformed_configs_are_one_line_errors(tmp_path, breakage, message):
    bad = tmp_path / "bad.pt2"

    def edit(m):
        name = "bn_exported/data/weights/model_weights_config.json"
        cfg = json.loads(m[name])
        breakage(cfg)
        m[name] = json.dumps(cfg).encode()
        return m

    _rewrite(FIXTURES / "bn_exported.pt2", bad, edit)
    with pytest.raises(CkptError, match=message):
        ckpttool.open(bad)
    result = run_cli("inspect", bad)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ckpttool: error[")


def _with_pickled_weight(src: Path, dst: Path, key: str, payload: bytes) -> None:
    """``key`` stored the way torch.export stores tensor subclasses: a nested torch.save archive."""
    root = src.stem

    def edit(m):
        name = f"{root}/data/weights/model_weights_config.json"
        cfg = json.loads(m[name])
        cfg["config"][key].update(path_name="weight_99", use_pickle=True)
        m[name] = json.dumps(cfg).encode()
        m[f"{root}/data/weights/weight_99"] = payload
        return m

    _rewrite(src, dst, edit)


def _saved(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_pickled_weight_record_is_read_like_torch_export_load(tmp_path):
    path = tmp_path / "pickled.pt2"
    value = torch.nn.Parameter(torch.arange(10, dtype=torch.float32) / 3)
    _with_pickled_weight(FIXTURES / "bn_exported.pt2", path, "fc.bias", _saved(value))
    expected = torch.export.load(path).state_dict
    assert torch.equal(expected["fc.bias"], value)
    sd = ckpttool.open(path).state_dict()
    assert list(sd) == list(expected)
    assert all(sd[k].digest() == _sha(v) and sd[k].dtype == _dtype(v) for k, v in expected.items())


def test_payload_in_a_pickled_weight_record_is_reported_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pt2"
    _with_pickled_weight(FIXTURES / "bn_exported.pt2", path, "fc.bias", _saved(_Payload(marker)))
    scan = run_cli("scan", path, "--json", cwd=tmp_path)
    assert scan.returncode == 1
    assert any("system" in d for d in json.loads(scan.stdout)["files"][0]["dangerous"])
    assert run_cli("inspect", path, cwd=tmp_path).returncode in (0, 1)
    assert not marker.exists()


def test_remap_refuses_to_write_an_archive_as_a_torch_file(tmp_path):
    result = run_cli("remap", FIXTURES / "bn_exported.pt2", "-o", tmp_path / "out.pt", "--add-prefix", "net")
    assert result.returncode == 2 and "convert" in result.stderr
    assert not list(tmp_path.iterdir())
    dry = run_cli("remap", FIXTURES / "bn_exported.pt2", "--add-prefix", "net", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert {m["to"] for m in json.loads(dry.stdout)["mapping"]} == \
        {f"net.{k}" for k in torch.load(FIXTURES / "bn_state_dict.pt", weights_only=True)}


def test_two_exported_programs_are_both_read(tmp_path):
    path = tmp_path / "two.pt2"

    copies = {"models/model.json": "models/second.json",
              "data/weights/model_weights_config.json": "data/weights/second_weights_config.json",
              "data/constants/model_constants_config.json": "data/constants/second_constants_config.json"}

    def edit(m):
        for src, dst in copies.items():
            m[f"bn_exported/{dst}"] = m[f"bn_exported/{src}"]
        return m

    _rewrite(FIXTURES / "bn_exported.pt2", path, edit)
    ckpt = ckpttool.open(path)
    assert set(ckpt.tree["other_models"]) == {"second"}
    assert list(ckpt.tree["other_models"]["second"]["weights"]) == list(ckpt.state_dict())
    assert any("2 exported programs" in f.message for f in ckpt.findings)


def test_aoti_package_without_exported_program_is_refused_clearly(tmp_path):
    path = tmp_path / "aoti.pt2"

    def edit(m):
        m = {k: v for k, v in m.items() if "/models/" not in k}
        m["bn_exported/data/aotinductor/model/model.wrapper.so"] = b"\x7fELF"
        return m

    _rewrite(FIXTURES / "bn_exported.pt2", path, edit)
    result = run_cli("inspect", path)
    assert result.returncode == 2 and "AOTInductor" in result.stderr and result.stderr.count("\n") == 1


def test_every_dtype_diffs_equal_against_torch_s_own_state_dict(exported, tmp_path):
    torch.save(exported["export_dtypes.pt2"].state_dict, tmp_path / "sd.pt")
    result = run_cli("diff", FIXTURES / "export_dtypes.pt2", tmp_path / "sd.pt", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(json.loads(result.stdout)["identical"]) == 21


@pytest.mark.parametrize("field, value", [
    ("dtype", []), ("dtype", {"as_int": 7}), ("dtype", True), ("sizes", "x"), ("sizes", [{"as_int": None}]),
    ("strides", [{"as_int": -1}, {"as_int": 1}]), ("storage_offset", {"as_int": 10**30}), ("layout", 1),
    ("device", []), (None, []), ("path_name", 5), ("tensor_meta", "x"),
])
def test_type_confused_configs_are_errors_not_crashes(tmp_path, field, value):
    bad = tmp_path / "bad.pt2"

    def edit(m):
        name = "bn_exported/data/weights/model_weights_config.json"
        cfg = json.loads(m[name])
        entry = cfg["config"]["fc.weight"]
        if field is None:
            cfg["config"]["fc.weight"] = value
        elif field in ("path_name", "tensor_meta"):
            entry[field] = value
        else:
            entry["tensor_meta"][field] = value
        m[name] = json.dumps(cfg).encode()
        return m

    _rewrite(FIXTURES / "bn_exported.pt2", bad, edit)
    try:
        ckpt = ckpttool.open(bad)
    except CkptError:
        return
    for ref in ckpt.state_dict().values():  # what was accepted must be readable as declared
        assert len(ref.read_bytes()) == ref.nbytes


def test_empty_record_reads_as_zeros_like_torch(tmp_path):
    path = tmp_path / "fake.pt2"

    def edit(m):
        cfg = json.loads(m["bn_exported/data/weights/model_weights_config.json"])
        record = cfg["config"]["fc.bias"]["path_name"]
        m[f"bn_exported/data/weights/{record}"] = b""
        return m

    _rewrite(FIXTURES / "bn_exported.pt2", path, edit)
    expected = torch.export.load(path).state_dict["fc.bias"]
    assert torch.equal(expected, torch.zeros(10))
    ref = ckpttool.open(path).state_dict()["fc.bias"]
    assert ref.digest() == _sha(expected)
