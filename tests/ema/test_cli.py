"""``ckpttool extract-ema``: exit statuses, JSON contract, --list/--source, --into-checkpoint, safe writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from fixtures.reference_models import BNModel, Model1
from tests.conftest import FIXTURES, run_cli
from tests.ema.conftest import assert_bit_identical, load_output
from tests.oracle import torch_load


def test_json_follows_the_contract(tmp_path: Path, cli) -> None:
    out = tmp_path / "ema.safetensors"
    run = cli("extract-ema", FIXTURES / "model1_train.pt", "-o", out, "--json")
    assert run.code == 0
    doc = run.json
    for key in ("schema_version", "source", "layout", "output", "sha256", "tensors", "updates", "distance",
                "findings"):
        assert key in doc
    assert doc["schema_version"] == 1 and doc["source"] == "ema" and doc["layout"] == "yolov5"
    assert doc["tensors"] == 12 and doc["updates"] == 15 and doc["output"] == str(out)
    assert doc["distance"]["max_abs"] > 0 and 0 < doc["distance"]["rel_l2"] < 1
    import hashlib

    assert doc["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert [f["code"] for f in doc["findings"]] == ["ema.few-updates"]


def test_identical_ema_exits_1_and_writes_nothing(tmp_path: Path, cli) -> None:
    sd = BNModel().state_dict()
    torch.save({"state_dict": sd, "state_dict_ema": {k: v.clone() for k, v in sd.items()}, "arch": "bn"},
               tmp_path / "ck.pth.tar")
    out = tmp_path / "ema.safetensors"
    run = cli("extract-ema", tmp_path / "ck.pth.tar", "-o", out, "--json")
    assert run.code == 1
    assert "ema.identical-to-model" in run.codes and run.json["output"] is None
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))
    human = cli("extract-ema", tmp_path / "ck.pth.tar", "-o", out)
    assert human.code == 1 and "ema.identical-to-model" in human.out and "nothing written" in human.out


def test_missing_ema_exits_2_with_section_not_found(tmp_path: Path) -> None:
    proc = run_cli("extract-ema", FIXTURES / "lightning.ckpt", "-o", tmp_path / "x.pt")
    assert proc.returncode == 2
    assert proc.stderr.startswith("ckpttool: error[section-not-found]") and "Traceback" not in proc.stderr
    assert "sections: model, optimizer, scheduler" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("name", ["truncated.pt", "does_not_exist.pt", "MANIFEST.json"])
def test_bad_input_exits_2_in_one_line(name: str, tmp_path: Path, cli) -> None:
    run = cli("extract-ema", FIXTURES / name, "-o", tmp_path / "x.pt")
    assert run.code == 2 and run.err.startswith("ckpttool: error[") and len(run.err.splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


def test_malicious_file_runs_nothing(tmp_path: Path) -> None:
    proc = run_cli("extract-ema", FIXTURES / "malicious_reduce.pt", "-o", tmp_path / "x.pt", cwd=tmp_path)
    assert proc.returncode == 2 and "section-not-found" in proc.stderr
    assert not (tmp_path / "ckpttool_marker_pwned").exists()


@pytest.mark.parametrize("args", [[], ["--list", "-o", "x.pt"], ["--strip-optimizer", "-o", "x.pt"],
                                  ["-o", "x.safetensors", "--into-checkpoint"], ["-o", "x.pt", "--dtype", "int3"],
                                  ["-o", "x.pt", "--source", "nope"], ["--dry-run", "-o", "x.pt"]])
def test_usage_errors_exit_2(args: list[str], tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = cli("extract-ema", FIXTURES / "model1_train.pt", *args)
    assert run.code == 2 and "usage-error" in run.err
    assert not list(tmp_path.iterdir())


def test_list_and_source_pick_between_candidates(tmp_path: Path, cli) -> None:
    torch.manual_seed(0)
    model = Model1()
    sd = model.state_dict()
    torch.save({"model": sd, "ema": {k: v * 0.5 for k, v in sd.items()},
                "model_ema": {k: v * 0.25 for k, v in sd.items()}}, tmp_path / "ck.pt")
    listing = cli("extract-ema", tmp_path / "ck.pt", "--list", "--json")
    assert listing.code == 0 and not list(tmp_path.glob("*.safetensors"))
    # the usual EMA keys in timm's order of preference: model_ema before ema
    assert [(c["source"], c["default"]) for c in listing.json["candidates"]] == [("model_ema", True), ("ema", False)]
    human = cli("extract-ema", tmp_path / "ck.pt", "--list")
    assert "--source ema" in human.out
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "e.safetensors", "--source", "ema", "--json")
    assert run.code == 0 and run.json["source"] == "ema"
    assert torch.equal(load_output(tmp_path / "e.safetensors")["fc1.weight"], sd["fc1.weight"] * 0.5)


def test_plain_extraction_of_stable_diffusion_is_ema_only(tmp_path: Path, cli) -> None:
    assert cli("extract-ema", FIXTURES / "sd_ema.ckpt", "-o", tmp_path / "emaonly.safetensors").code == 0
    src = torch.load(FIXTURES / "sd_ema.ckpt", weights_only=True)["state_dict"]
    got = load_output(tmp_path / "emaonly.safetensors")
    assert sorted(got) == sorted(k for k in src if not k.startswith("model_ema."))


def test_dry_run_checks_and_writes_nothing(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = cli("extract-ema", FIXTURES / "sd_ema.ckpt", "--dry-run", "--json")
    assert run.code == 0 and run.json["output"] is None and run.json["coverage"]["out_of_scope"] == 22
    assert not list(tmp_path.iterdir())


def test_dtype_fp16_casts_floating_tensors_only(tmp_path: Path, cli) -> None:
    out = tmp_path / "ema16.pt"
    assert cli("extract-ema", FIXTURES / "timm_checkpoint.pth.tar", "-o", out, "--dtype", "fp16").code == 0
    got = load_output(out)
    want = torch_load(FIXTURES / "timm_checkpoint.pth.tar")["state_dict_ema"]
    assert got["bn.num_batches_tracked"].dtype == torch.int64
    assert all(torch.equal(got[k], v.half()) for k, v in want.items() if v.is_floating_point())


def test_into_checkpoint_generic_with_strip_optimizer(tmp_path: Path, cli) -> None:
    out = tmp_path / "publish.pt"
    run = cli("extract-ema", FIXTURES / "generic_train.pt", "-o", out, "--into-checkpoint", "--strip-optimizer",
              "--json")
    assert run.code == 0 and run.json["into_checkpoint"]
    src = torch.load(FIXTURES / "generic_train.pt", weights_only=True)
    got = torch.load(out, weights_only=True)
    assert list(got) == [k for k in src if k != "optimizer_state_dict"]
    assert_bit_identical(got["model_state_dict"], src["model_ema"])
    assert got["epoch"] == src["epoch"] and got["scheduler"] == src["scheduler"]
    BNModel().load_state_dict(got["model_state_dict"], strict=True)


def test_into_checkpoint_yolov5_puts_the_ema_into_model(tmp_path: Path, cli) -> None:
    out = tmp_path / "publish.pt"
    assert cli("extract-ema", FIXTURES / "model1_train.pt", "-o", out, "--into-checkpoint", "--sanitize").code == 0
    got = torch.load(out, weights_only=True)  # no pickled classes left: loads without running code
    ema = torch_load(FIXTURES / "model1_train.pt")["ema"].state_dict()
    assert_bit_identical(got["model"], ema)
    assert_bit_identical(got["ema"], ema) and got["updates"] == 15 and "optimizer" in got
    Model1().load_state_dict(got["model"], strict=True)


def test_into_checkpoint_lightning_drops_the_raw_copy(tmp_path: Path, cli) -> None:
    out = tmp_path / "publish.ckpt"
    run = cli("extract-ema", FIXTURES / "lightning_ema.ckpt", "-o", out, "--into-checkpoint", "--json")
    assert run.code == 0
    got = torch.load(out, weights_only=True)
    assert "current_model_state" not in got and "averaging_state" not in got
    assert_bit_identical(got["state_dict"], torch_load(FIXTURES / "lightning_ema.ckpt")["state_dict"])
    assert got["pytorch-lightning_version"] and got["optimizer_states"]


def test_into_checkpoint_without_a_model_section_is_a_usage_error(tmp_path: Path, cli) -> None:
    run = cli("extract-ema", FIXTURES / "model1_averaged_ema.pt", "-o", tmp_path / "x.pt", "--into-checkpoint")
    assert run.code == 2 and "usage-error" in run.err and not (tmp_path / "x.pt").exists()


def test_existing_output_needs_force_and_the_input_is_never_written(tmp_path: Path, cli) -> None:
    src = tmp_path / "last.pt"
    shutil.copyfile(FIXTURES / "model1_train.pt", src)
    before = src.read_bytes()
    run = cli("extract-ema", src, "-o", src, "--force")
    assert run.code == 2 and "output-refused" in run.err and src.read_bytes() == before
    out = tmp_path / "ema.pt"
    out.write_bytes(b"keep me")
    assert cli("extract-ema", src, "-o", out).code == 2 and out.read_bytes() == b"keep me"
    assert cli("extract-ema", src, "-o", out, "--force").code == 0 and load_output(out)
    assert src.read_bytes() == before


def test_human_report_says_where_why_and_how_far(tmp_path: Path, cli) -> None:
    run = cli("extract-ema", FIXTURES / "mmengine_epoch_2.pth", "-o", tmp_path / "e.safetensors")
    assert run.code == 0
    for text in ("EMA state_dict", "mmengine EMAHook", "updates 4", "ema_state_dict.steps",
                 "9 of 9 model keys", "relative L2", "wrote", "sha256"):
        assert text in run.out, text


def test_help_has_an_example(cli) -> None:
    run = cli("extract-ema", "--help")
    assert run.code == 0 and "ckpttool extract-ema last.pt -o model.safetensors" in run.out


def test_into_checkpoint_stable_diffusion_swaps_the_weights_and_keeps_the_litema(tmp_path: Path, cli) -> None:
    out = tmp_path / "published.ckpt"
    assert cli("extract-ema", FIXTURES / "sd_ema.ckpt", "-o", out, "--into-checkpoint").code == 0
    got = torch.load(out, weights_only=True)
    src = torch.load(FIXTURES / "sd_ema.ckpt", weights_only=True)
    assert got["global_step"] == src["global_step"]
    assert list(got["state_dict"]) == list(src["state_dict"])  # still loads strictly into LatentDiffusion
    key = "model.diffusion_model.input_blocks.1.0.weight"
    assert torch.equal(got["state_dict"][key], src["state_dict"]["model_ema.diffusion_modelinput_blocks10weight"])
    assert torch.equal(got["state_dict"]["betas"], src["state_dict"]["betas"])


def test_distance_matches_torch(tmp_path: Path, cli) -> None:
    torch.manual_seed(8)
    model = {"w": torch.randn(300, 700), "b": torch.randn(700), "n": torch.tensor(3)}
    ema = {"w": (model["w"] + 1e-2 * torch.randn(300, 700)).half(), "b": model["b"].clone().half(), "n": model["n"]}
    torch.save({"model": model, "ema": ema}, tmp_path / "ck.pt")
    run = cli("extract-ema", tmp_path / "ck.pt", "--dry-run", "--json")
    diffs = [(model[k].double() - ema[k].double()).reshape(-1) for k in ("w", "b")]
    d = torch.cat(diffs)
    raw = torch.cat([model[k].double().reshape(-1) for k in ("w", "b")])
    assert run.json["distance"]["max_abs"] == pytest.approx(float(d.abs().max()), rel=1e-12)
    assert run.json["distance"]["rel_l2"] == pytest.approx(float(d.norm() / raw.norm()), rel=1e-6)
    assert run.json["distance"]["compared"] == 2 and "ema.dtype-differs" in run.codes


def test_non_finite_counters_are_ignored_not_crashed_on(tmp_path: Path, cli) -> None:
    nan, inf = float("nan"), float("inf")
    torch.save({"state_dict": {"model.w": torch.ones(2), "model_ema.decay": torch.tensor(nan),
                               "model_ema.num_updates": torch.tensor(inf), "model_ema.w": torch.zeros(2)}},
               tmp_path / "sd.ckpt")
    torch.save({"model": {"w": torch.ones(2)}, "ema": {"shadow_params": [torch.zeros(2)], "num_updates": inf,
                                                       "decay": nan}}, tmp_path / "te.pt")
    for name in ("sd.ckpt", "te.pt"):
        run = cli("extract-ema", tmp_path / name, "--dry-run", "--json")
        assert run.code == 0, run.err
        assert run.json["updates"] is None and run.json["decay"] is None
        assert run.json["distance"]["max_abs"] == 1.0


def test_a_diverged_ema_is_flagged(tmp_path: Path, cli) -> None:
    model = {"w": torch.ones(4), "mask": torch.tensor([0.0, float("-inf")])}
    ema = {"w": torch.tensor([1.0, float("nan"), 0.5, 1.0]), "mask": model["mask"].clone()}
    torch.save({"model": model, "ema": ema}, tmp_path / "ck.pt")
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "e.safetensors", "--json")
    assert run.code == 0 and "ema.non-finite" in run.codes  # -inf in both (a mask) is not flagged
    (finding,) = [f for f in run.json["findings"] if f["code"] == "ema.non-finite"]
    assert finding["message"].startswith("1 EMA tensors") and finding["message"].endswith(": w")
    assert run.json["distance"]["max_abs"] == 0.5
    assert run.json["distance"]["rel_l2"] == pytest.approx(0.5 / 3**0.5)  # over the finite pairs only
