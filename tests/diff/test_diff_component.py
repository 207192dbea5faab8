"""``diff PIPELINE FILE --section unet``: a diffusers pipeline component against the single file it was
extracted to, compared with that file's model (expected values from safetensors' own loader)."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file, save_file

from tests.conftest import FIXTURES, run_cli

PIPE = FIXTURES / "hf" / "diffusers_pipeline"
UNET = PIPE / "unet" / "diffusion_pytorch_model.safetensors"


def _diff(*args: object):
    r = run_cli("diff", *args, "--json")
    return r.returncode, (json.loads(r.stdout) if r.stdout else None), r.stderr


@pytest.mark.parametrize("order", ["pipeline-first", "file-first"])
def test_the_component_equals_its_own_file(order):
    a, b = (PIPE, UNET) if order == "pipeline-first" else (UNET, PIPE)
    rc, doc, err = _diff(a, b, "--section", "unet")
    assert rc == 0, err
    section = doc["sections"]["unet"]
    assert sorted(section["identical"]) == sorted(load_file(UNET))
    assert "whole file" in (section["source_b"] if order == "pipeline-first" else section["source_a"])


def test_a_changed_tensor_of_the_extracted_file_is_found(tmp_path):
    sd = load_file(UNET)
    key = "conv_in.weight"
    sd[key] = sd[key] + 1.0
    edited = tmp_path / "unet.safetensors"
    save_file(sd, edited)
    rc, doc, _ = _diff(PIPE, edited, "--section", "unet")
    assert rc == 1
    section = doc["sections"]["unet"]
    assert [e["key"] for e in section["value_changed"]] == [key]
    assert len(section["identical"]) == len(sd) - 1
    original = load_file(UNET)[key]
    expected = (sd[key] - original).abs().max().item()  # what torch measures between the two files
    assert section["value_changed"][0]["max_abs"] == pytest.approx(expected)


def test_another_components_file_differs_by_its_keys():
    vae = PIPE / "vae" / "diffusion_pytorch_model.safetensors"
    rc, doc, _ = _diff(PIPE, vae, "--section", "unet")
    assert rc == 1
    section = doc["sections"]["unet"]
    assert sorted(section["only_in_a"]) == sorted(load_file(UNET))
    assert sorted(section["only_in_b"]) == sorted(load_file(vae))


def test_a_section_that_is_not_a_component_is_still_refused():
    r = run_cli("diff", PIPE, UNET, "--section", "ema")
    assert r.returncode == 2
    assert r.stderr.startswith("ckpttool: error[section-not-found]") and "Traceback" not in r.stderr
