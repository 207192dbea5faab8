"""The committed checkpoint fixtures match fixtures/MANIFEST.json, and a few contents are what the
manifest says.  Regenerate with ``python fixtures/make_fixtures.py`` (see its docstring).

Nothing here unpickles with ``weights_only=False``: ``malicious_reduce.pt`` runs a shell command when
loaded unsafely, and the pickled-module fixtures refer to modules that do not exist.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())
FILES = MANIFEST["files"]

# Files in fixtures/ that are not fixtures.
NON_FIXTURE_FILES = {
    "__init__.py", "make_fixtures.py", "reference_models.py", "MANIFEST.json", "README.md",
    "requirements-fixtures.txt", "make_gpu_fixtures.py", "model1_to_model2.toml", "make_ultralytics_fixture.py",
    "make_deepspeed_fixtures.py",
    "make_side_env.sh", "make_hf_fixtures.py",
    "make_side_fixtures.sh",
}
MAX_FILE_BYTES = 1 << 20
MAX_TOTAL_BYTES = 8 << 20


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(name: str, **kw):
    return torch.load(FIXTURES / name, map_location="cpu", weights_only=True, **kw)


# ---- manifest -------------------------------------------------------------------------------

def test_manifest_shape():
    assert isinstance(MANIFEST["torch"], str) and MANIFEST["torch"]
    assert FILES
    for name, entry in FILES.items():
        assert "/" not in name and "\\" not in name, name
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), name
        assert isinstance(entry["bytes"], int) and entry["bytes"] > 0, name
        assert isinstance(entry["description"], str) and entry["description"], name


@pytest.mark.parametrize("name", sorted(FILES))
def test_declared_file_matches(name):
    path = FIXTURES / name
    assert path.is_file(), f"{name} is in MANIFEST.json but missing"
    assert path.stat().st_size == FILES[name]["bytes"], name
    assert _sha256(path) == FILES[name]["sha256"], f"{name} differs from MANIFEST.json; regenerate both"


def test_no_undeclared_fixture_files():
    present = {
        p.name for p in FIXTURES.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in NON_FIXTURE_FILES
    }
    assert not {p.name for p in FIXTURES.iterdir()
                if p.is_dir() and p.name not in ("__pycache__", "gpu", "deepspeed", "hf")}
    assert present - set(FILES) == set(), "fixture files missing from MANIFEST.json"


def test_fixture_sizes_stay_small():
    sizes = {name: e["bytes"] for name, e in FILES.items()}
    assert max(sizes.values()) <= MAX_FILE_BYTES, max(sizes, key=sizes.get)
    assert sum(sizes.values()) <= MAX_TOTAL_BYTES


# ---- contents (weights_only loads only) ------------------------------------------------------

def test_state_dicts_fit_the_reference_models():
    from fixtures.reference_models import MODEL1_TO_MODEL2, Model1, Model2

    sd1, sd2 = _load("model1_state_dict.pt"), _load("model2_state_dict.pt")
    Model1().load_state_dict(sd1, strict=True)
    Model2().load_state_dict(sd2, strict=True)
    remapped = {}
    for k, v in sd1.items():
        for old, new in MODEL1_TO_MODEL2.items():
            if k.startswith(old):
                remapped[new + k[len(old):]] = v
    assert list(remapped) == list(sd2)
    assert all(torch.equal(remapped[k], sd2[k]) for k in sd2)


@pytest.mark.parametrize("name,prefix", [
    ("model1_module_prefixed.pt", "module."),
    ("model1_orig_mod_prefixed.pt", "_orig_mod."),
    ("model1_wrapper_soup.pt", "_orig_mod.module."),
])
def test_prefixed_copies(name, prefix):
    sd1 = _load("model1_state_dict.pt")
    sd = _load(name)
    assert list(sd) == [prefix + k for k in sd1]
    assert all(torch.equal(sd[prefix + k], v) for k, v in sd1.items())


def test_other_containers_hold_model1():
    from safetensors.torch import load_file

    sd1 = _load("model1_state_dict.pt")
    for other in (load_file(str(FIXTURES / "model1_state_dict.safetensors")), _load("model1_state_dict_legacy.pt")):
        assert set(other) == set(sd1)
        assert all(torch.equal(other[k], v) for k, v in sd1.items())


def test_truncated_is_a_prefix():
    full = (FIXTURES / "model1_state_dict.pt").read_bytes()
    cut = (FIXTURES / "truncated.pt").read_bytes()
    assert len(cut) == len(full) // 2 and full.startswith(cut)


def test_cuda_tagged_needs_map_location():
    sd = _load("cuda_tagged.pt")
    ref = _load("bn_state_dict.pt")
    assert list(sd) == list(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(FIXTURES / "cuda_tagged.pt", weights_only=True)


def test_malicious_is_refused_by_weights_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match=r"(?i)weights.only"):
        torch.load(FIXTURES / "malicious_reduce.pt", weights_only=True)
    assert not (tmp_path / "ckpttool_marker_pwned").exists()


def test_dtypes_zoo_views():
    z = _load("dtypes_zoo.pt")
    assert z["shared_slice"].untyped_storage().data_ptr() == z["shared_base"].untyped_storage().data_ptr()
    assert z["shared_slice"].storage_offset() == 4
    assert not z["transposed"].is_contiguous()
    assert z["scalar0d"].dim() == 0 and z["empty"].numel() == 0
    for name in ("float8_e4m3fn", "float8_e5m2", "bfloat16", "uint16", "complex64", "bool"):
        assert z[name].dtype == getattr(torch, name)


# ---- fixtures/gpu: made once on a CUDA machine by make_gpu_fixtures.py ---------------------------

GPU = FIXTURES / "gpu"
GPU_MANIFEST = json.loads((GPU / "MANIFEST.json").read_text())


@pytest.mark.parametrize("name", sorted(GPU_MANIFEST["files"]))
def test_gpu_fixture_matches_its_manifest(name):
    entry = GPU_MANIFEST["files"][name]
    path = GPU / name
    assert path.is_file() and path.stat().st_size == entry["bytes"], name
    assert _sha256(path) == entry["sha256"], name


def test_no_undeclared_gpu_fixture_files():
    present = {str(p.relative_to(GPU)) for p in GPU.rglob("*") if p.is_file()}
    assert present - {"MANIFEST.json", "GENERATION.log"} == set(GPU_MANIFEST["files"])
    assert sum(e["bytes"] for e in GPU_MANIFEST["files"].values()) <= 8 << 20
