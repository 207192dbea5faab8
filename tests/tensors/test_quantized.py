"""Quantized tensors and eager-mode quantized state_dicts: inspect, diff and convert, against torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import FIXTURES, run_cli
from tests.tensors.torch_walk import signature

QUANTIZED = FIXTURES / "quantized.pt"
MODULES = FIXTURES / "quantized_modules.pt"


def _inspect(path: Path) -> dict:
    proc = run_cli("inspect", path, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _sha(entry_part: dict, tensor: torch.Tensor) -> bool:
    return entry_part["dtype"] == signature(tensor)[0] and tuple(entry_part["shape"]) == signature(tensor)[1]


def test_inspect_shows_quantization_parameters_as_torch_reports_them() -> None:
    theirs = torch.load(QUANTIZED, weights_only=False)
    tensors = _inspect(QUANTIZED)["sections"]["model"]["tensors"]
    assert list(tensors) == list(theirs)
    for key, t in theirs.items():
        entry = tensors[key]
        assert entry["shape"] == list(t.shape)
        assert entry["dtype"] == str(t.dtype).removeprefix("torch.")
        if not t.is_quantized:
            assert "type" not in entry
            continue
        assert entry["type"] == "quantized" and entry["decoded"] is True
        int_repr = t.int_repr()
        assert entry["parts"]["int_repr"]["nbytes"] == int_repr.numel() * int_repr.element_size()
        assert _sha(entry["parts"]["int_repr"], int_repr)
        if t.qscheme() == torch.per_tensor_affine:
            assert entry["params"]["scale"] == t.q_scale()
            assert entry["params"]["zero_point"] == t.q_zero_point()
        else:
            assert entry["params"]["axis"] == t.q_per_channel_axis()
            assert _sha(entry["parts"]["scales"], t.q_per_channel_scales())
            assert _sha(entry["parts"]["zero_points"], t.q_per_channel_zero_points())


def test_quantized_module_state_dict_lists_packed_params() -> None:
    theirs = torch.load(MODULES, weights_only=False)
    tensors = _inspect(MODULES)["sections"]["model"]["tensors"]
    tensor_keys = [k for k, v in theirs.items() if isinstance(v, torch.Tensor | tuple)]
    assert sorted(tensors) == sorted(tensor_keys)
    packed = tensors["1._packed_params._packed_params"]
    weight, bias = theirs["1._packed_params._packed_params"]
    assert packed["type"] == "packed_params"
    assert packed["params"]["0"]["scale"] == weight.q_scale()
    assert _sha(packed["parts"]["0.int_repr"], weight.int_repr()) and _sha(packed["parts"]["1"], bias)
    conv = tensors["0.weight"]
    assert conv["type"] == "quantized" and conv["params"]["axis"] == theirs["0.weight"].q_per_channel_axis()


def _changed_copy(tmp_path: Path, key: str, edit) -> Path:
    sd = torch.load(QUANTIZED, weights_only=False)
    sd[key] = edit(sd[key])
    out = tmp_path / "edited.pt"
    torch.save(sd, out)
    return out


@pytest.mark.parametrize("jobs", ["1", "2"])  # worker processes compare plain tensors; composites too
def test_diff_sees_one_changed_integer_with_dequantized_figures(tmp_path: Path, jobs: str) -> None:
    def bump(q: torch.Tensor) -> torch.Tensor:
        ints = q.int_repr().clone()
        ints[0, 0] += 1
        return torch._make_per_tensor_quantized_tensor(ints, q.q_scale(), q.q_zero_point())

    edited = _changed_copy(tmp_path, "per_tensor_quint8", bump)
    proc = run_cli("diff", QUANTIZED, edited, "--json", "--jobs", jobs)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    changed = {e["key"]: e for e in report["value_changed"]}
    assert list(changed) == ["per_tensor_quint8"]
    a = torch.load(QUANTIZED, weights_only=False)["per_tensor_quint8"].dequantize().double()
    b = torch.load(edited, weights_only=False)["per_tensor_quint8"].dequantize().double()
    assert changed["per_tensor_quint8"]["max_abs"] == pytest.approx(float((a - b).abs().max()))
    assert changed["per_tensor_quint8"]["parts_changed"] == ["int_repr"]
    assert changed["per_tensor_quint8"]["state_changed"] is False
    assert set(report["identical"]) == set(torch.load(QUANTIZED, weights_only=False)) - {"per_tensor_quint8"}


def test_diff_sees_a_changed_scale_with_the_same_integers(tmp_path: Path) -> None:
    def rescale(q: torch.Tensor) -> torch.Tensor:
        return torch._make_per_tensor_quantized_tensor(q.int_repr(), q.q_scale() * 2, q.q_zero_point())

    edited = _changed_copy(tmp_path, "per_tensor_qint8", rescale)
    proc = run_cli("diff", QUANTIZED, edited, "--json")
    assert proc.returncode == 1
    entry = {e["key"]: e for e in json.loads(proc.stdout)["value_changed"]}["per_tensor_qint8"]
    assert entry["parts_changed"] == [] and entry["state_changed"] is True
    a = torch.load(QUANTIZED, weights_only=False)["per_tensor_qint8"].dequantize().double()
    assert entry["max_abs"] == pytest.approx(float(a.abs().max()))  # each value doubled: |2a - a| = |a|


def test_diff_of_a_file_with_itself_is_equal() -> None:
    for path in (QUANTIZED, MODULES):
        proc = run_cli("diff", path, path, "--json")
        assert proc.returncode == 0, proc.stdout
        assert json.loads(proc.stdout)["equal"] is True


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_convert_refuses_quantized_entries_naming_them(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    proc = run_cli("convert", QUANTIZED, "-o", out, "--section", "model")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "per_tensor_quint8" in proc.stderr and "--drop" in proc.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_convert_with_drop_writes_the_rest_and_reports_it(tmp_path: Path) -> None:
    out = tmp_path / "plain.safetensors"
    proc = run_cli("convert", QUANTIZED, "-o", out, "--drop", "per_*", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    theirs = torch.load(QUANTIZED, weights_only=False)
    assert sorted(result["excluded"]) == sorted(k for k in theirs if k.startswith("per_"))
    from safetensors.torch import load_file

    written = load_file(out)
    assert list(written) == ["plain"] and torch.equal(written["plain"], theirs["plain"])


def test_dequantized_values_match_torch_dequantize_for_every_scheme() -> None:
    import ckpttool
    from ckpttool.ops.diff.composite import dequantized

    theirs = torch.load(QUANTIZED, weights_only=False)
    composites = ckpttool.open(QUANTIZED).state_dict().composites
    assert {c.dtype for c in composites.values()} == {"quint8", "qint8", "qint32", "quint4x2", "quint2x4"}
    for key, entry in composites.items():
        expected = theirs[key].dequantize().double().numpy()
        assert dequantized(entry) == pytest.approx(expected, rel=1e-6, abs=1e-7), key


def test_diff_aligns_composite_keys_like_plain_ones(tmp_path: Path) -> None:
    wrapped = tmp_path / "ddp.pt"
    theirs = torch.load(QUANTIZED, weights_only=False)
    torch.save({f"module.{k}": v for k, v in theirs.items()}, wrapped)
    proc = run_cli("diff", QUANTIZED, wrapped, "--normalize-keys", "--json")
    assert proc.returncode == 0, proc.stdout
    report = json.loads(proc.stdout)
    assert report["equal"] is True and not report["only_in_a"] and not report["only_in_b"]
    assert sorted(report["identical"]) == sorted(theirs)


def _rebuilt(tensors: dict[str, torch.Tensor], key: str, record: dict) -> torch.Tensor:
    """A quantized tensor rebuilt by torch from the documented parts (as the README tells users)."""
    ints = tensors[f"{key}.int_repr"]
    if "axis" in record:
        return torch._make_per_channel_quantized_tensor(ints, tensors[f"{key}.scales"],
                                                        tensors[f"{key}.zero_points"], record["axis"])
    return torch._make_per_tensor_quantized_tensor(ints, float(tensors[f"{key}.scale"]),
                                                   int(tensors[f"{key}.zero_point"]))


@pytest.mark.parametrize("path", [QUANTIZED, MODULES], ids=lambda p: p.name)
def test_quantized_parts_rebuild_the_same_quantized_tensors(tmp_path: Path, path: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "parts.safetensors"
    proc = run_cli("convert", path, "-o", out, "--quantized-parts")
    assert proc.returncode == 0, proc.stderr
    with safe_open(str(out), "pt") as f:
        records = json.loads(f.metadata()["ckpttool.quantized"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    theirs = torch.load(path, weights_only=False)
    originals = {}
    for key, value in theirs.items():
        if isinstance(value, tuple):  # an eager quantized layer's (weight, bias)
            originals[f"{key}.0"] = value[0]
            assert torch.equal(tensors[f"{key}.1"], value[1])
        elif isinstance(value, torch.Tensor) and value.is_quantized:
            originals[key] = value
    assert set(records) == set(originals)
    for key, q in originals.items():
        assert records[key]["dtype"] == str(q.dtype).removeprefix("torch.") and records[key]["shape"] == list(q.shape)
        if q.dtype in (torch.quint4x2, torch.quint2x4):  # no torch constructor from packed bytes: compare them
            assert torch.equal(tensors[f"{key}.int_repr"], q.int_repr())
            continue
        back = _rebuilt(tensors, key, records[key])
        assert back.qscheme() == q.qscheme() or q.qscheme() == torch.per_channel_affine_float_qparams
        assert torch.equal(back.int_repr(), q.int_repr()) and torch.equal(back.dequantize(), q.dequantize())


def test_quantized_parts_is_refused_for_torch_output(tmp_path: Path) -> None:
    proc = run_cli("convert", QUANTIZED, "-o", tmp_path / "q.pt", "--quantized-parts")
    assert proc.returncode == 2 and "--quantized-parts" in proc.stderr
