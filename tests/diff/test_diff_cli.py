"""``ckpttool diff`` end to end on fixtures and on checkpoints torch writes in tmp_path."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from fixtures.reference_models import BNModel
from tests.diff.helpers import FIXTURES, model1_sd, run, run_json, save, torch_stats


@pytest.mark.parametrize("name", ["model1_state_dict.pt", "model1_train.pt", "lightning.ckpt", "dtypes_zoo.pt"])
def test_checkpoint_against_itself_is_equal(capsys, name):
    rc, out, err = run(capsys, "diff", FIXTURES / name, FIXTURES / name, "--section", "all")
    assert rc == 0, out + err
    assert "equal" in out and err == ""


def test_same_weights_in_the_other_format_are_equal(capsys):
    rc, data = run_json(capsys, FIXTURES / "model1_state_dict.pt", FIXTURES / "model1_state_dict.safetensors")
    assert rc == 0
    assert data["equal"] is True and data["schema_version"] == 1 and data["section"] == "model"
    assert len(data["identical"]) == 12
    assert data["value_changed"] == data["only_in_a"] == data["only_in_b"] == []


def test_copy_is_equal_but_not_by_path_shortcut(capsys, tmp_path):
    a = save(model1_sd(), tmp_path / "a.pt")
    b = save(model1_sd(), tmp_path / "b.safetensors")
    rc, data = run_json(capsys, a, b)
    assert rc == 0 and len(data["identical"]) == 12


def test_perturbed_copy_reports_the_right_tensors_and_statistics(capsys, tmp_path):
    sd = model1_sd()
    perturbed = {k: v.clone() for k, v in sd.items()}
    gen = torch.Generator().manual_seed(0)
    perturbed["fc1.weight"] += 1e-3 * torch.randn(perturbed["fc1.weight"].shape, generator=gen)
    perturbed["conv2.bias"][3] += 0.5
    a, b = save(sd, tmp_path / "a.pt"), save(perturbed, tmp_path / "b.pt")
    rc, data = run_json(capsys, a, b)
    assert rc == 1 and data["equal"] is False
    changed = {e["key"]: e for e in data["value_changed"]}
    assert set(changed) == {"fc1.weight", "conv2.bias"}
    assert len(data["identical"]) == 10
    for key, entry in changed.items():
        ref = torch_stats(sd[key], perturbed[key])
        for metric in ("max_abs", "mean_abs", "rel_l2", "cosine"):
            assert math.isclose(entry[metric], ref[metric], rel_tol=1e-9, abs_tol=1e-15), (key, metric)
        assert entry["mismatched"] == ref["mismatched"]
        assert entry["numel"] == sd[key].numel()
    assert changed["conv2.bias"]["mismatched"] == 1
    assert data["verdict"] == "model: 2 parameters changed"


def test_within_tolerance_is_equal_and_tolerance_options_decide(capsys, tmp_path):
    sd = model1_sd()
    nudged = {k: v.clone() for k, v in sd.items()}
    nudged["fc3.bias"] = torch.nextafter(nudged["fc3.bias"], torch.full_like(nudged["fc3.bias"], 10.0))
    a, b = save(sd, tmp_path / "a.pt"), save(nudged, tmp_path / "b.pt")
    rc, data = run_json(capsys, a, b)
    assert rc == 0 and data["equal"] is True
    assert [e["key"] for e in data["within_tolerance"]] == ["fc3.bias"]
    rc, data = run_json(capsys, a, b, "--rtol", "0", "--atol", "0")
    assert rc == 1 and [e["key"] for e in data["value_changed"]] == ["fc3.bias"]


def test_added_and_removed_keys(capsys, tmp_path):
    sd = model1_sd()
    other = dict(sd)
    del other["conv_a.weight"]
    other["extra.weight"] = torch.ones(3)
    rc, data = run_json(capsys, save(sd, tmp_path / "a.pt"), save(other, tmp_path / "b.pt"))
    assert rc == 1
    assert data["only_in_a"] == ["conv_a.weight"] and data["only_in_b"] == ["extra.weight"]
    assert data["value_changed"] == []


def test_shape_and_dtype_changes_are_reported_apart(capsys, tmp_path):
    sd = model1_sd()
    other = dict(sd)
    other["fc3.weight"] = torch.zeros(5, 84)
    other["fc1.weight"] = sd["fc1.weight"].half()
    rc, data = run_json(capsys, save(sd, tmp_path / "a.pt"), save(other, tmp_path / "b.safetensors"))
    assert rc == 1
    assert data["shape_changed"] == [{"key": "fc3.weight", "a": [10, 84], "b": [5, 84]}]
    assert data["dtype_changed"] == [{"key": "fc1.weight", "a": "float32", "b": "float16"}]
    entry = {e["key"]: e for e in data["value_changed"] + data["within_tolerance"]}["fc1.weight"]
    ref = torch_stats(sd["fc1.weight"], other["fc1.weight"])
    assert math.isclose(entry["max_abs"], ref["max_abs"], rel_tol=1e-12)
    assert math.isclose(entry["cosine"], ref["cosine"], rel_tol=1e-12)


def test_dtype_change_of_exact_values_passes_with_ignore_dtype(capsys, tmp_path):
    sd = model1_sd()
    wide = {k: v.double() for k, v in sd.items()}
    a, b = save(sd, tmp_path / "a.pt"), save(wide, tmp_path / "b.pt")
    rc, data = run_json(capsys, a, b)
    assert rc == 1 and len(data["dtype_changed"]) == 12 and data["value_changed"] == []
    assert all(e["max_abs"] == 0 for e in data["within_tolerance"])
    rc, data = run_json(capsys, a, b, "--ignore-dtype")
    assert rc == 0 and data["equal"] is True


def test_nans_are_counted_and_never_equal(capsys, tmp_path):
    sd = model1_sd()
    a_sd = {k: v.clone() for k, v in sd.items()}
    b_sd = {k: v.clone() for k, v in sd.items()}
    b_sd["fc5.bias"][0] = float("nan")
    a_sd["fc3.bias"][1] = b_sd["fc3.bias"][1] = float("nan")  # NaN in both at one spot...
    b_sd["fc3.bias"][2] += 1.0  # ...and a real change elsewhere
    b_sd["fc1.bias"][0] = float("inf")
    rc, data = run_json(capsys, save(a_sd, tmp_path / "a.pt"), save(b_sd, tmp_path / "b.pt"), "--atol", "10")
    assert rc == 1
    changed = {e["key"]: e for e in data["value_changed"]}
    assert changed["fc5.bias"]["nan_b"] == 1 and changed["fc5.bias"]["mismatched"] == 1
    assert changed["fc5.bias"]["max_abs"] == 0.0  # over the finite pairs
    assert changed["fc3.bias"]["nan_a"] == changed["fc3.bias"]["nan_b"] == 1
    assert changed["fc3.bias"]["mismatched"] == 1  # the NaN pair; the +1.0 is within atol=10
    assert changed["fc1.bias"]["inf_b"] == 1 and changed["fc1.bias"]["mismatched"] == 1
    for key in changed:
        assert changed[key]["mismatched"] == torch_stats(a_sd[key], b_sd[key], atol=10)["mismatched"]


def test_buffers_only_change_says_parameters_unchanged(capsys, tmp_path):
    torch.manual_seed(0)
    model = BNModel()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    rc, data = run_json(capsys, save(before, tmp_path / "a.pt"), save(model.state_dict(), tmp_path / "b.pt"))
    assert rc == 1
    assert {e["key"] for e in data["value_changed"]} == {"bn.running_mean", "bn.running_var",
                                                          "bn.num_batches_tracked"}
    assert all(e["kind"] == "buffer" for e in data["value_changed"])
    assert data["verdict"] == "model: parameters unchanged, 3 buffers changed"
    assert data["sections"]["model"]["counts"]["parameters_changed"] == 0
    rc, _, _ = run(capsys, "diff", tmp_path / "a.pt", tmp_path / "b.pt", "--fail-on", "*:max_abs>0")
    assert rc == 1
    rc, out, _ = run(capsys, "diff", tmp_path / "a.pt", tmp_path / "b.pt", "--fail-on", "conv.*:max_abs>0",
                     "--fail-on", "fc.*:cosine<0.9999")
    assert rc == 0 and "ok --fail-on conv.*:max_abs>0" in out


def test_pickled_modules_tell_parameters_from_buffers(capsys, tmp_path):
    torch.manual_seed(0)
    model = BNModel()
    a = save({"epoch": 1, "model": copy.deepcopy(model), "ema": None, "updates": None, "optimizer": None},
             tmp_path / "a.pt")
    model.bn.running_var.fill_(2.0)  # a buffer that is not named like BatchNorm's would still be told apart
    b = save({"epoch": 1, "model": model, "ema": None, "updates": None, "optimizer": None}, tmp_path / "b.pt")
    rc, data = run_json(capsys, a, b)
    assert rc == 1 and data["sections"]["model"]["kinds_known"] is True
    assert data["verdict"] == "model: parameters unchanged, 1 buffer changed"


def test_model1_against_model2_keys_differ_until_mapped(capsys):
    a, b = FIXTURES / "model1_state_dict.pt", FIXTURES / "model2_state_dict.pt"
    rc, data = run_json(capsys, a, b)
    assert rc == 1
    assert set(data["only_in_a"]) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                      "conv_a.weight", "conv_a.bias"}
    assert set(data["only_in_b"]) == {"backbone.0.weight", "backbone.0.bias", "backbone.3.weight",
                                      "backbone.3.bias"}
    rc, data = run_json(capsys, a, b, "--map", "conv1=backbone.0", "--map", "conv2=backbone.3")
    assert data["only_in_a"] == ["conv_a.weight", "conv_a.bias"] and data["only_in_b"] == []
    assert len(data["identical"]) == 10 and rc == 1
    rc, data = run_json(capsys, a, b, "--map", "conv1=backbone.0", "--map", "conv2=backbone.3",
                        "--fail-on", "backbone.*:max_abs>0")
    assert rc == 0 and data["fail_on"] == [{"rule": "backbone.*:max_abs>0", "failed": False, "keys": []}]


@pytest.mark.parametrize("name", ["model1_module_prefixed.pt", "model1_orig_mod_prefixed.pt",
                                  "model1_wrapper_soup.pt"])
def test_normalize_keys_meets_wrapped_state_dicts(capsys, name):
    plain = FIXTURES / "model1_state_dict.pt"
    rc, _ = run_json(capsys, FIXTURES / name, plain, "--normalize-keys")
    assert rc == 0


def test_strip_prefix(capsys, tmp_path):
    sd = model1_sd()
    prefixed = save({f"net.{k}": v for k, v in sd.items()}, tmp_path / "p.pt")
    rc, data = run_json(capsys, prefixed, FIXTURES / "model1_state_dict.pt")
    assert rc == 1 and len(data["only_in_a"]) == 12
    rc, data = run_json(capsys, prefixed, FIXTURES / "model1_state_dict.pt", "--strip-prefix", "net.")
    assert rc == 0 and len(data["identical"]) == 12


def test_training_dict_meta_and_optimizer_sections(capsys, tmp_path):
    model = BNModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    a = save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 4}, tmp_path / "a.pt")
    opt.param_groups[0]["lr"] = 5e-4
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    b = save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 9}, tmp_path / "b.pt")
    rc, data = run_json(capsys, a, b, "--section", "meta")
    assert rc == 1 and data["meta_changed"] == [{"path": "epoch", "a": 4, "b": 9, "change": "changed"}]
    rc, out, _ = run(capsys, "diff", a, b, "--section", "meta")
    assert "meta.epoch: 4 → 9" in out
    rc, data = run_json(capsys, a, b, "--section", "optimizer")
    assert rc == 1
    assert {"path": "param_groups.0.lr", "a": 1e-3, "b": 5e-4, "change": "changed"} in data["meta_changed"]
    assert "state.0.exp_avg" in {e["key"] for e in data["value_changed"]}
    rc, data = run_json(capsys, a, b, "--section", "all")
    assert set(data["sections"]) == {"model", "optimizer", "meta"}
    assert "meta.epoch" in [m["path"] for m in data["meta_changed"]]
    assert "optimizer.state.0.exp_avg" in [e["key"] for e in data["value_changed"]]


def test_plain_state_dict_against_training_dict_uses_its_model(capsys, tmp_path):
    sd = model1_sd()
    train = save({"model_state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []}, "epoch": 1},
                 tmp_path / "t.pt")
    rc, data = run_json(capsys, FIXTURES / "model1_state_dict.pt", train)
    assert rc == 0 and len(data["identical"]) == 12


def test_group_by_module_and_all_listing(capsys, tmp_path):
    sd = model1_sd()
    other = {k: (v + 1 if k.startswith("fc") else v) for k, v in sd.items()}
    a, b = save(sd, tmp_path / "a.pt"), save(other, tmp_path / "b.pt")
    rc, data = run_json(capsys, a, b, "--group-by", "module")
    groups = {g["group"]: g for g in data["groups"]}
    assert list(groups) == ["conv1", "conv2", "fc1", "fc5", "fc3", "conv_a"]
    assert groups["fc1"]["changed"] == 2 and groups["conv1"]["identical"] == 2
    rc, out, _ = run(capsys, "diff", a, b, "--group-by", "module")
    assert rc == 1
    assert "fc5" in out and "conv_a" not in out.split("by module")[1]
    rc, out, _ = run(capsys, "diff", a, b, "--all")
    assert rc == 1
    assert "conv_a.weight" in out and "identical" in out


def test_map_matches_whole_components_only(capsys, tmp_path):
    a = save({"conv1.weight": torch.ones(2), "conv10.weight": torch.zeros(2)}, tmp_path / "a.pt")
    b = save({"stem.weight": torch.ones(2), "conv10.weight": torch.zeros(2)}, tmp_path / "b.pt")
    rc, data = run_json(capsys, a, b, "--map", "conv1=stem")
    assert rc == 0 and sorted(data["identical"]) == ["conv10.weight", "stem.weight"]


def test_missing_section_in_all_mode_is_a_difference_not_a_crash(capsys):
    rc, data = run_json(capsys, FIXTURES / "model1_train.pt", FIXTURES / "model1_release.pt", "--section", "all")
    assert rc == 1
    assert data["sections"]["ema"]["missing"] == "b" and data["sections"]["optimizer"]["meta_changed"] == []


@pytest.mark.parametrize("args, reference", [
    (["nope.pt", "model1_state_dict.pt"], "error[unreadable-checkpoint]"),
    (["truncated.pt", "model1_state_dict.pt"], "truncated"),
    (["model1_state_dict.pt", "model1_state_dict.pt", "--section", "ema"], "error[section-not-found]"),
    (["model1_state_dict.pt", "model1_state_dict.pt", "--fail-on", "fc*:size>3"], "error[usage-error]"),
    (["model1_state_dict.pt", "model1_state_dict.pt", "--fail-on", "nonsense"], "error[usage-error]"),
    (["model1_state_dict.pt", "model1_state_dict.pt", "--map", "conv1"], "error[usage-error]"),
    (["model1_state_dict.pt", "model1_state_dict.pt", "--depth", "2"], "error[usage-error]"),
    (["model1_state_dict.pt", "model1_state_dict.pt", "--rtol", "-1"], "error[usage-error]"),
    (["model1_state_dict.pt", "model2_state_dict.pt", "--map", "conv1=fc1"], "error[remap-conflict]"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, monkeypatch, args, reference):
    monkeypatch.chdir(FIXTURES)
    rc, out, err = run(capsys, "diff", *args)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and reference in err and "Traceback" not in err


def test_malicious_file_is_never_executed(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, _ = run(capsys, "diff", FIXTURES / "malicious_reduce.pt", FIXTURES / "malicious_reduce.pt")
    assert rc in (0, 1, 2)
    assert not Path("ckpttool_marker_pwned").exists()


def test_help_has_an_example(capsys):
    rc, out, _ = run(capsys, "diff", "--help")
    assert rc == 0 and "ckpttool diff a.pt b.safetensors" in out and "--fail-on" in out


def test_rules_file_and_like_align_model1_to_model2(capsys, tmp_path):
    a, b = FIXTURES / "model1_state_dict.pt", FIXTURES / "model2_state_dict.pt"
    rules = tmp_path / "m1m2.toml"
    rules.write_text('[[rule]]\nmap = { conv1 = "backbone.0", conv2 = "backbone.3" }\n[[rule]]\ndrop = "conv_a"\n')
    rc, data = run_json(capsys, a, b, "--rules", rules)
    assert rc == 0 and data["equal"] is True and len(data["identical"]) == 10
    assert data["sections"]["model"]["dropped_by_rules"] == ["conv_a.weight", "conv_a.bias"]
    rc, data = run_json(capsys, a, b, "--like", b)  # conv1 and conv_a both fit backbone.0: module order decides
    assert rc == 0 and len(data["identical"]) == 10
    assert any(f["code"] == "remap.ambiguous" and "kept module order" in f["message"] for f in data["findings"])
    rc, data = run_json(capsys, a, b, "--map", "conv1=backbone.0", "--like", b)
    assert rc == 0 and len(data["identical"]) == 10


def test_maps_are_simultaneous(capsys, tmp_path):
    a = save({"x.weight": torch.ones(2), "y.weight": torch.zeros(2)}, tmp_path / "a.pt")
    b = save({"y.weight": torch.ones(2), "x.weight": torch.zeros(2)}, tmp_path / "b.pt")
    rc, _ = run_json(capsys, a, b)
    assert rc == 1
    rc, data = run_json(capsys, a, b, "--map", "x=y", "--map", "y=x")
    assert rc == 0 and sorted(data["identical"]) == ["x.weight", "y.weight"]


def test_progress_bar_appears_only_after_the_delay(monkeypatch):
    from ckpttool.cli.progress import ProgressBar

    monkeypatch.delenv("CKPTTOOL_PROGRESS_DELAY", raising=False)
    bar = ProgressBar("comparing")
    bar.start(100)
    bar.advance(10)
    assert bar._bar is None  # under a second: nothing drawn
    bar.delay = 0.0
    bar.advance(10)
    assert bar._bar is not None and bar.done == 20
    bar.close()
    assert bar._bar is None


def test_diff_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    a = save({k: v.to(torch.bfloat16) for k, v in model1_sd().items()}, tmp_path / "a.safetensors")
    b = save({k: (v + 1).to(torch.bfloat16) for k, v in model1_sd().items()}, tmp_path / "b.pt")
    code = ("import sys; from ckpttool.cli import main; rc = main(['diff', sys.argv[1], sys.argv[2], '--json']); "
            "sys.exit(10 + rc if 'torch' in sys.modules else rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(a), str(b)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr


def test_optimizer_state_of_dropped_parameters_is_reported_as_tensors_only(capsys):
    rc, data = run_json(capsys, FIXTURES / "lightning.ckpt", FIXTURES / "lightning_ema.ckpt", "--section", "optimizer")
    assert rc == 1
    paths = [m["path"] for m in data["meta_changed"]]
    assert paths and all(p.startswith("param_groups.0.params.") for p in paths)
    assert paths == sorted(paths, key=lambda p: int(p.rsplit(".", 1)[1]))  # natural order: 6, 7, ..., 10, 11
    assert "state.6.momentum_buffer" in data["only_in_a"]


def test_json_keeps_the_design_contract(capsys, tmp_path):
    sd = model1_sd()
    other = dict(sd)
    other["fc1.weight"] = sd["fc1.weight"] + 0.01
    del other["conv_a.weight"]
    rc, data = run_json(capsys, save(sd, tmp_path / "a.pt"), save(other, tmp_path / "b.pt"))
    assert rc == 1
    contract = {"schema_version": int, "equal": bool, "section": str, "only_in_a": list, "only_in_b": list,
                "shape_changed": list, "dtype_changed": list, "value_changed": list, "identical": list,
                "meta_changed": list}
    for key, kind in contract.items():
        assert isinstance(data[key], kind), key
    entry = data["value_changed"][0]
    assert entry["key"] == "fc1.weight"
    assert {"max_abs", "mean_abs", "rel_l2", "cosine", "mismatched"} <= set(entry)
    assert math.isclose(entry["max_abs"], 0.01, rel_tol=1e-4) and entry["mismatched"] == sd["fc1.weight"].numel()


def test_strip_prefix_works_on_whole_components(capsys, tmp_path):
    a = save({"model.w": torch.ones(2), "modelx.w": torch.zeros(2)}, tmp_path / "a.pt")
    b = save({"w": torch.ones(2), "modelx.w": torch.zeros(2)}, tmp_path / "b.pt")
    for prefix in ("model", "model."):
        rc, data = run_json(capsys, a, b, "--strip-prefix", prefix)
        assert rc == 0 and sorted(data["identical"]) == ["modelx.w", "w"]


def test_ema_only_file_compares_its_ema_as_the_model(tmp_path) -> None:
    """An AveragedModel file has no raw model: its averaged weights are what the default section compares."""
    import torch

    from ckpttool.cli import main

    averaged = FIXTURES / "model1_averaged_ema.pt"
    raw = {k.removeprefix("module."): v for k, v in torch.load(averaged, weights_only=True).items()
           if k != "n_averaged"}
    same = tmp_path / "same.pt"
    torch.save(raw, same)
    assert main(["diff", str(averaged), str(same)]) == 0
    assert main(["diff", str(averaged), str(FIXTURES / "model1_state_dict.pt")]) == 1
