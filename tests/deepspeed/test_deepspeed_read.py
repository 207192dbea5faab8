"""Reading DeepSpeed ZeRO folders: the consolidated fp32 weights bit for bit against DeepSpeed's own
``get_fp32_state_dict_from_zero_checkpoint``, the 16-bit module, and the run facts inspect shows."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import ckpttool
from ckpttool.errors import CkptError
from tests.deepspeed.helpers import CASES, DS, NAMES, ROOT, ZERO3, ZERO12, expected_fp32, rows


def _got(sd) -> list[tuple[str, list[int], str, str]]:
    return [(k, list(t.shape), t.dtype, t.digest()) for k, t in sd.items()]


@pytest.mark.parametrize("name", NAMES)
def test_fp32_weights_match_deepspeed(name):
    ckpt = ckpttool.open(DS / name)
    assert ckpt.format == "deepspeed" and ckpt.layout == "deepspeed"
    assert _got(ckpt.state_dict("model")) == expected_fp32(name)


@pytest.mark.parametrize("name", NAMES)
def test_tied_parameters_are_one_tensor(name):
    sd = ckpttool.open(DS / name).state_dict("model")
    for alias, owner in (CASES[name]["fp32_same_tensor"] or {}).items():
        assert sd[alias] is sd[owner]


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n]["stage"] == 1])
def test_zero1_frozen_parameters_are_kept_and_named(name):
    ckpt = ckpttool.open(DS / name)
    frozen = CASES[name]["frozen_params"]
    assert frozen and not set(frozen) & {r[0] for r in rows(CASES[name]["fp32_state_dict"])}  # DeepSpeed drops them
    assert ckpt.members["frozen_from_module16"] == frozen
    assert ckpt.meta["frozen_from_module16"] == ", ".join(frozen)


@pytest.mark.parametrize("name", ZERO12)
def test_model16_is_the_saved_module(name):
    assert _got(ckpttool.open(DS / name).state_dict("model16")) == rows(CASES[name]["module"])


@pytest.mark.parametrize("name", ZERO3)
def test_zero3_has_no_model16(name):
    assert "model16" not in ckpttool.open(DS / name).sections


@pytest.mark.parametrize("name", NAMES)
def test_run_facts(name):
    case = CASES[name]
    ckpt = ckpttool.open(DS / name)
    assert ckpt.meta["zero_stage"] == case["stage"]
    assert ckpt.meta["world_size"] == case["world_size"]
    assert ckpt.meta["dtype"] == {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[case["dtype"]]
    assert ckpt.meta["tag"] == case["tag"]
    assert ckpt.meta["global_steps"] == case["global_steps"]
    for key, value in case["client_state"].items():
        assert ckpt.meta[key] == value
    assert ckpt.sections["scheduler"].value == case["lr_scheduler"]
    groups = ckpt.sections["optimizer"].value["param_groups"]
    assert [g["lr"] for g in groups] == case["param_groups_lr"]
    if case["loss_scaler"] is None:
        assert "scaler" not in ckpt.sections
        return
    scaler = ckpt.sections["scaler"].value
    assert scaler.qualname.rsplit(".", 1)[-1] == case["loss_scaler"]
    assert scaler.attributes["cur_scale"] == case["cur_scale"]


def test_tag_folder_reads_like_the_root():
    name = "zero3_bf16_2ranks"
    tag = DS / name / CASES[name]["tag"]
    assert _got(ckpttool.open(tag).state_dict("model")) == expected_fp32(name)


def test_reads_lazily_in_bounded_chunks():
    sd = ckpttool.open(DS / "zero3_fp16_2ranks").state_dict("model")
    t = sd["fc1.weight"]  # 78 elements, each rank holding 39
    pieces = list(t.chunks(chunk=16))
    assert all(len(p) <= 16 for p in pieces) and b"".join(pieces) == t.read_bytes()


def test_every_file_tree_is_kept():
    ckpt = ckpttool.open(DS / "zero2_fp16_2ranks")
    files = ckpt.tree["files"]
    assert sorted(files) == sorted(k for k in CASES["zero2_fp16_2ranks"]["files"] if k.endswith(".pt"))


def test_inspect_and_scan_do_not_import_torch():
    code = ("import sys, ckpttool; from ckpttool.ops.inspect import inspect_checkpoint; "
            "from ckpttool.ops.scan import scan_file; from pathlib import Path; "
            f"inspect_checkpoint(ckpttool.open({str(DS / 'zero3_bf16_2ranks')!r})); "
            f"scan_file(Path({str(DS / 'zero2_fp16_2ranks')!r})); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---- malformed folders: one clear error, never a wrong answer -----------------------------------------

def _copy(tmp_path, name="zero2_fp16_2ranks"):
    dst = tmp_path / name
    shutil.copytree(DS / name, dst)
    return dst, dst / CASES[name]["tag"]


def test_missing_rank_is_refused(tmp_path):
    root, tag = _copy(tmp_path)
    (tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    with pytest.raises(CkptError, match="partition count 2 but 1"):
        ckpttool.open(root)


def test_latest_outside_the_folder_is_refused(tmp_path):
    root, _ = _copy(tmp_path)
    (root / "latest").write_text("../elsewhere")
    with pytest.raises(CkptError, match="not a tag folder"):
        ckpttool.open(root)


def test_latest_naming_a_missing_tag_is_refused(tmp_path):
    root, _ = _copy(tmp_path)
    (root / "latest").write_text("global_step99")
    with pytest.raises(CkptError, match="global_step99"):
        ckpttool.open(root)


def test_truncated_partition_is_an_error(tmp_path):
    root, tag = _copy(tmp_path)
    f = tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CkptError):
        ckpttool.open(root).state_dict("model")["fc1.weight"].read_bytes()


def test_short_partition_is_refused_not_misread(tmp_path):
    import torch

    root, tag = _copy(tmp_path)
    torch.save({"optimizer_state_dict": {"zero_stage": 2, "partition_count": [2, 2],
                                         "single_partition_of_fp32_groups": [torch.zeros(3), torch.zeros(24)]}},
               tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    with pytest.raises(CkptError, match="ends past"):
        ckpttool.open(root)


def test_optim_file_without_optimizer_state_is_refused(tmp_path):
    import torch

    root, tag = _copy(tmp_path)
    torch.save({"something": 1}, tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    with pytest.raises(CkptError, match="no optimizer_state_dict"):
        ckpttool.open(root)


def test_cli_error_is_one_line(tmp_path):
    from tests.conftest import run_cli

    root, tag = _copy(tmp_path)
    (tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt").unlink()
    r = run_cli("inspect", root)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("ckpttool: error[")


@pytest.mark.parametrize("name", ["zero0_bf16_1rank", "zero0_fp32_1rank"])
def test_without_zero_the_model_is_the_module_and_16_bit_is_flagged(name):
    ckpt = ckpttool.open(DS / name)
    assert ckpt.meta["zero_stage"] == 0
    flagged = [f for f in ckpt.findings if "fp32 master copy is not consolidated" in f.message]
    assert bool(flagged) == (CASES[name]["dtype"] == "bf16")


def test_one_model_states_file_offers_no_fp32_model():
    z2 = ckpttool.open(DS / "zero2_fp16_2ranks" / "global_step3" / "mp_rank_00_model_states.pt")
    assert z2.layout == "deepspeed-model-states" and "model" not in z2.sections
    assert _got(z2.state_dict("model16")) == rows(CASES["zero2_fp16_2ranks"]["module"])
    z3 = ckpttool.open(DS / "zero3_fp16_2ranks" / "global_step3" / "zero_pp_rank_0_mp_rank_00_model_states.pt")
    assert z3.layout == "deepspeed-model-states" and "model16" not in z3.sections and "model" not in z3.sections


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch ckpttool_marker_pwned",))


def test_planted_payload_is_reported_never_run(tmp_path, monkeypatch):
    import torch

    from tests.conftest import run_cli

    monkeypatch.chdir(tmp_path)
    root, tag = _copy(tmp_path)
    f = tag / "mp_rank_00_model_states.pt"
    states = torch.load(f, map_location="cpu", weights_only=True)
    states["run_hook"] = _Evil()
    torch.save(states, f)
    ckpt = ckpttool.open(root)
    assert [x.code for x in ckpt.findings if x.severity == "error"] == ["unsafe.global"]
    assert ckpt.dangerous == ["posix.system"]  # os.system pickles under its real module
    r = run_cli("scan", f, cwd=tmp_path)
    assert r.returncode == 1
    assert not (tmp_path / "ckpttool_marker_pwned").exists()
