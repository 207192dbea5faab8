"""``ckpttool validate-resume`` as a user runs it: exit codes, JSON contract, plots, --fix writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import ckpttool
from ckpttool.cli import cli, main
from tests.conftest import FIXTURES, run_cli
from tests.resume.helpers import generic_checkpoint

TRAIN = str(FIXTURES / "model1_train.pt")


def _run(*args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    res = runner.invoke(cli, ["validate-resume", *args], standalone_mode=False, catch_exceptions=False)
    return int(res.return_value or 0), res.stdout, res.stderr


def test_json_contract_and_exit_0() -> None:
    code, out, _ = _run(TRAIN, "--epochs", "400", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["schema_version"] == 1 and d["ok"] is True
    assert (d["start_epoch"], d["epochs_done"], d["new_total_epochs"]) == (5, 5, 400)
    assert set(d["lr"]) == {"last_trained", "resume_old", "resume_new", "jump"}
    assert set(d["curve"]) == {"old", "new"} and d["curve"]["new"][0][0] == 5
    assert all(set(c) >= {"code", "status", "message"} and c["status"] in ("pass", "warn", "fail") for c in d["checks"])
    assert d["epochs_readings"] == {"total": 400, "additional": 405}


def test_human_output_has_checklist_and_plot() -> None:
    code, out, _ = _run(TRAIN, "--epochs", "400")
    assert code == 0
    assert "PASS" in out and "resume.lr-jump" in out and "◀ resume" in out
    assert "learning rate ×1e-2" in out  # the terminal plot
    assert "\x1b[" not in out  # no colour when not a terminal


def test_failed_checks_exit_1() -> None:
    assert main(["validate-resume", str(FIXTURES / "model1_release.pt"), "--epochs", "400"]) == 1
    code, out, _ = _run(TRAIN, "--epochs", "3")
    assert code == 1 and "FAIL" in out


@pytest.mark.parametrize("args", [
    ["missing.pt", "--epochs", "10"],
    [str(FIXTURES / "truncated.pt"), "--epochs", "10"],
    [TRAIN, "--epochs", "0"],
    [TRAIN, "--epochs", "10", "--lr-lambda", "__import__('os').system('touch x')"],
    [TRAIN, "--epochs", "10", "--fix"],
    [TRAIN, "--epochs", "10", "--schedule", "cosine", "--lr-lambda", "x"],
    [TRAIN, "--epochs", "10", "--milestones", "a,b"],
    [TRAIN],
])
def test_bad_input_exits_2_with_one_line(args: list[str], tmp_path: Path) -> None:
    proc = run_cli("validate-resume", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and len(lines) <= 3 and ("error" in lines[-1].lower())
    assert not (tmp_path / "x").exists()


def test_plot_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "lr.png"
    code, _, _ = _run(TRAIN, "--epochs", "400", "--plot", str(png), "--no-plot", "--json")
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fix_writes_a_patched_copy_atomically(tmp_path: Path) -> None:
    pytest.importorskip("ckpttool.io.write.checkpoint")
    src = tmp_path / "last.pt"
    make = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=50)  # noqa: E731
    generic_checkpoint(src, make, done=6, steps=5, per_step=True)
    before = src.read_bytes()
    out = tmp_path / "fixed.pt"
    code, stdout, _ = _run(str(src), "--epochs", "14", "--fix", "-o", str(out), "--json")
    d = json.loads(stdout)
    assert code == 1  # the input's plan fails (overflow) — the fix is in the new file
    assert d["written"]["path"] == str(out) and d["written"]["overflow_after"] is None
    assert src.read_bytes() == before
    # the patch rescales the schedule position (last_epoch), so say how many steps an epoch has
    again = json.loads(_run(str(out), "--epochs", "14", "--steps-per-epoch", "5", "--json")[1])
    assert again["ok"] is True and again["overflow"] is None
    assert abs(again["lr"]["jump"]) < 1e-12
    ck = torch.load(out, weights_only=True)  # a plain weights-only file torch can load
    assert ck["scheduler"]["total_steps"] > 50
    # refuses to overwrite without --force, never writes onto the input
    assert main(["validate-resume", str(src), "--epochs", "14", "--fix", "-o", str(out)]) == 2
    assert main(["validate-resume", str(src), "--epochs", "14", "--fix", "-o", str(src), "--force"]) == 2
    assert src.read_bytes() == before


@pytest.mark.parametrize("name", ["fixed.safetensors", "last.pt.fixed"])
def test_fix_output_name_asks_for_a_torch_extension(tmp_path: Path, name: str) -> None:
    """An output name that is not a torch file gets one answer: name it .pt, .pth or .ckpt (never .safetensors)."""
    src = tmp_path / "last.pt"
    make = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=50)  # noqa: E731
    generic_checkpoint(src, make, done=6, steps=5, per_step=True)
    proc = run_cli("validate-resume", src, "--epochs", "14", "--fix", "-o", tmp_path / name)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert ".pt, .pth or .ckpt" in proc.stderr and ".safetensors" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_fix_of_pickled_module_checkpoint_converts_modules(tmp_path: Path) -> None:
    pytest.importorskip("ckpttool.io.write.checkpoint")
    from ckpttool.ops.resume import ResumeOptions, validate_resume
    from tests.resume.helpers import save_yolov5, tiny_model

    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        opt.step()
        sched.step()
    save_yolov5(tmp_path / "y.pt", model, opt, epoch=3, updates=8, opt_dict={"epochs": 10})
    # the pickled model class no longer exists; add the scheduler state to the tree ckpttool read
    ck = ckpttool.open(tmp_path / "y.pt")
    ck.tree["scheduler"] = sched.state_dict()
    from ckpttool.layouts import recognise

    recognise(ck)
    result = validate_resume(ck, ResumeOptions(epochs=30, scheduler="restore"), fix_output=tmp_path / "fixed.pt",
                             sanitize=True)
    assert result.written is not None
    codes = {c.code: c for c in result.checks}
    assert "resume.fix-converted" in codes and "state_dict" in codes["resume.fix-converted"].message
    loaded = torch.load(tmp_path / "fixed.pt", weights_only=True)
    assert loaded["scheduler"]["T_max"] == 30
    assert set(loaded["model"]) == set(model.state_dict())


def test_plot_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code = main(["validate-resume", TRAIN, "--epochs", "400", "--plot", str(tmp_path / "lr.png"), "--json"])
    assert code == 2 and not (tmp_path / "lr.png").exists()
    assert "pip install 'ckpttool[plot]'" in capsys.readouterr().err


def test_validate_resume_json_path_never_imports_torch(tmp_path: Path) -> None:
    code = ("import sys, json; from ckpttool.cli import main; "
            f"rc = main(['validate-resume', {TRAIN!r}, '--epochs', '400', '--json']); "
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}), file=sys.stderr)")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == {"rc": 0, "torch": False}
