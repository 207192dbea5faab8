"""A rewrite keeps everything it does not rename: torch.load of the output shows what it showed of the input.

Each case remaps (or converts, publishes an EMA into, fixes the scheduler of) a checkpoint written by
real library code, then a child process loads input and output with ``torch.load(weights_only=False)``
and compares the whole object trees: types and values, renamed keys aside (``compare_trees.py``).
Classes of packages that do not install here come from ``tests/write/foreign`` on the child's path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import ckpttool
from tests.conftest import FIXTURES, ROOT, run_cli

HERE = Path(__file__).resolve().parent
GPU = FIXTURES / "gpu"


def compare(original: Path, rewritten: Path, renames: dict[str, str] | None = None,
            leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load both files with torch in a child process and compare them (see compare_trees.py)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "foreign"), str(ROOT)]))
    run = subprocess.run([sys.executable, str(HERE / "compare_trees.py"), str(original), str(rewritten),
                          json.dumps(renames or {}), json.dumps(list(leave_out))],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


# file, --map, types torch.load must find in both trees
CASES = [
    ("timm_checkpoint.pth.tar", "bn=norm", {"argparse.Namespace"}),
    ("gpu/timm_real/last.pth.tar", "blocks.0=blocks.zero", {"argparse.Namespace"}),
    ("mmengine_epoch_2.pth", "net.bn=net.norm",
     {"collections.Counter", "numpy.float64", "numpy.ndarray", "builtins.method",
      "mmengine.logging.history_buffer.HistoryBuffer"}),
    ("model1_train.pt", "conv1=stem", {"fixtures.reference_models.Model1", "torch.nn.parameter.Parameter"}),
    ("ultralytics_last.pt", "model.0=model.first",
     {"ultralytics.nn.tasks.DetectionModel", "ultralytics.nn.modules.conv.Conv",
      "ultralytics.utils.IterableSimpleNamespace"}),
    ("gpu/ultralytics_real_last.pt", "model.0=model.first",
     {"ultralytics.nn.tasks.DetectionModel", "ultralytics.nn.modules.block.C2f", "torch.Size"}),
    ("gpu/ultralytics_real_final.pt", "model.0=model.first", {"ultralytics.nn.tasks.DetectionModel"}),
    ("model1_release.pt", "conv1=stem", {"fixtures.reference_models.Model1"}),
    ("gpu/cuda_amp_train.pt", "conv1=stem", {"fixtures.reference_models.Model1"}),
    ("lightning.ckpt", "model.conv1=model.stem", {"collections.OrderedDict"}),
    ("lightning_ema.ckpt", "model.bn=model.norm", {"collections.OrderedDict"}),
    ("lightning_swa.ckpt", "model.bn=model.norm", {"collections.OrderedDict"}),
    ("gpu/lightning_amp_cuda.ckpt", "model.bn=model.norm", {"collections.OrderedDict"}),
    ("sd_ema.ckpt", "betas=noise_betas", {"collections.OrderedDict"}),
    ("generic_train.pt", "bn=norm", {"collections.OrderedDict"}),
    ("ema_pytorch.pt", "bn=norm", {"collections.OrderedDict"}),
    ("torch_ema.pt", "bn=norm", {"collections.OrderedDict"}),
]


@pytest.mark.parametrize(("name", "rename", "types"), CASES, ids=[c[0] for c in CASES])
def test_remap_keeps_every_object_it_does_not_rename(tmp_path: Path, name: str, rename: str,
                                                     types: set[str]) -> None:
    src, out = FIXTURES / name, tmp_path / "out.pt"
    run = run_cli("remap", src, "-o", out, "--map", rename, "--json")
    assert run.returncode == 0, run.stderr
    old, new = rename.split("=")
    keys = list(ckpttool.open(out).state_dict())
    assert any(k == new or k.startswith(new + ".") for k in keys)
    assert not any(k == old or k.startswith(old + ".") for k in keys)
    got = compare(src, out, {old: new})
    assert got["problems"] == []
    assert types <= set(got["types"]), set(types) - set(got["types"])
    assert "remap.pickled-module" not in run.stdout  # pickled models stayed models


def test_the_comparison_sees_a_rename_it_was_not_told_about(tmp_path: Path) -> None:
    src, out = FIXTURES / "model1_train.pt", tmp_path / "out.pt"
    assert run_cli("remap", src, "-o", out, "--map", "conv1=stem").returncode == 0
    problems = compare(src, out)["problems"]
    assert any("children" in p and "stem" in p for p in problems)


def test_a_rename_that_moves_tensors_to_another_parent_writes_a_state_dict_and_says_so(tmp_path: Path) -> None:
    src, out = FIXTURES / "model1_train.pt", tmp_path / "out.pt"
    run = run_cli("remap", src, "-o", out, "--add-prefix", "net", "--json")
    assert run.returncode == 0, run.stderr
    assert "remap.pickled-module" in run.stdout
    model = torch.load(out, weights_only=False)["model"]
    ref = ckpttool.open(src).state_dict()
    assert list(model) == ["net." + k for k in ref]


def test_convert_torch_to_torch_keeps_the_mmengine_message_hub(tmp_path: Path) -> None:
    src, out = FIXTURES / "mmengine_epoch_2.pth", tmp_path / "copy.pth"
    assert run_cli("convert", src, "-o", out).returncode == 0
    got = compare(src, out)
    assert got["problems"] == [] and "builtins.method" in got["types"]


@pytest.mark.parametrize("name", ["timm_checkpoint.pth.tar", "ultralytics_last.pt", "model1_train.pt",
                                  "gpu/cuda_amp_train.pt"])
def test_convert_torch_to_torch_keeps_everything(tmp_path: Path, name: str) -> None:
    src, out = FIXTURES / name, tmp_path / "copy.pt"
    run = run_cli("convert", src, "-o", out)
    assert run.returncode == 0, run.stderr
    assert compare(src, out)["problems"] == []


def test_extract_ema_into_checkpoint_keeps_the_pickled_model(tmp_path: Path) -> None:
    src, out = FIXTURES / "model1_train.pt", tmp_path / "publish.pt"
    assert run_cli("extract-ema", src, "-o", out, "--into-checkpoint").returncode == 0
    assert compare(src, out, leave_out=("model",))["problems"] == []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "foreign"), str(ROOT)]))
    code = ("import sys, torch; a = torch.load(sys.argv[1], weights_only=False); "
            "b = torch.load(sys.argv[2], weights_only=False); m, e = b['model'], a['ema']; "
            "assert type(m) is type(a['model']) and m.state_dict().keys() == e.state_dict().keys(); "
            "assert all(torch.equal(m.state_dict()[k], v) for k, v in e.state_dict().items()); "
            "print(type(m).__name__, sum(isinstance(p, torch.nn.Parameter) for p in m.parameters()))")
    run = subprocess.run([sys.executable, "-c", code, str(src), str(out)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[0] == "Model1" and int(run.stdout.split()[1]) > 0


def test_extract_ema_into_checkpoint_keeps_the_mmengine_message_hub(tmp_path: Path) -> None:
    src, out = FIXTURES / "mmengine_epoch_2.pth", tmp_path / "publish.pth"
    assert run_cli("extract-ema", src, "-o", out, "--into-checkpoint").returncode == 0
    got = compare(src, out, leave_out=("state_dict", "ema_state_dict"))
    assert got["problems"] == [] and "mmengine.logging.history_buffer.HistoryBuffer" in got["types"]
    assert _child_eval(out, "sorted(ck)") == "['message_hub', 'meta', 'optimizer', 'param_schedulers', 'state_dict']"


def test_validate_resume_fix_keeps_everything_but_the_scheduler(tmp_path: Path) -> None:
    import argparse
    import collections

    from fixtures.reference_models import BNModel

    torch.manual_seed(0)
    model = BNModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(3):
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        opt.step()
        sched.step()
    src = tmp_path / "train.pt"
    torch.save({"epoch": 2, "model": model, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "args": argparse.Namespace(lr=0.1, epochs=10), "seen": collections.Counter(a=2, b=1)}, src)
    out = tmp_path / "fixed.pt"
    run = run_cli("validate-resume", src, "--epochs", "30", "--fix", "-o", out, "--json")
    assert run.returncode in (0, 1), run.stderr
    assert compare(src, out, leave_out=("scheduler",))["problems"] == []
    fixed = torch.load(out, weights_only=False)
    assert fixed["scheduler"]["T_max"] != sched.state_dict()["T_max"]
    assert type(fixed["model"]) is BNModel and type(fixed["args"]) is argparse.Namespace
    clean = tmp_path / "clean.pt"
    run = run_cli("validate-resume", src, "--epochs", "30", "--fix", "-o", clean, "--sanitize", "--json")
    assert run.returncode in (0, 1), run.stderr
    plain = torch.load(clean, weights_only=True)
    assert list(plain["model"]) == list(model.state_dict()) and plain["seen"] == {"a": 2, "b": 1}
    assert plain["scheduler"]["T_max"] == fixed["scheduler"]["T_max"]


def test_extract_ema_sanitize_needs_into_checkpoint(tmp_path: Path) -> None:
    run = run_cli("extract-ema", FIXTURES / "model1_train.pt", "-o", tmp_path / "e.pt", "--sanitize")
    assert run.returncode == 2 and "--into-checkpoint" in run.stderr and not (tmp_path / "e.pt").exists()


def test_a_dangerous_global_is_refused_by_name_and_sanitize_removes_it(tmp_path: Path) -> None:
    src, out = FIXTURES / "malicious_reduce.pt", tmp_path / "out.pt"
    run = run_cli("remap", src, "-o", out, "--map", "fc=head", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "error[unsafe-content]" in run.stderr and "posix.system" in run.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
    run = run_cli("remap", src, "-o", out, "--map", "fc=head", "--sanitize", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    clean = torch.load(out, weights_only=True)
    assert clean["payload"] is None and set(clean["state_dict"]) == {"head.weight", "head.bias"}
    assert not list(tmp_path.glob("ckpttool_marker_pwned"))


def test_sanitize_turns_stand_ins_into_plain_data(tmp_path: Path) -> None:
    src, out = FIXTURES / "timm_checkpoint.pth.tar", tmp_path / "out.pt"
    run = run_cli("remap", src, "-o", out, "--map", "bn=norm", "--sanitize", "--json")
    assert run.returncode == 0, run.stderr
    assert "remap.sanitized" in run.stdout
    plain = torch.load(out, weights_only=True)
    assert plain["args"] == vars(torch.load(src, weights_only=False)["args"])


def _lightning_checkpoint(folder: Path) -> Path:
    """A Lightning checkpoint whose hyper_parameters come from an omegaconf DictConfig (as Hydra users save)."""
    lightning = pytest.importorskip("lightning")
    omegaconf = pytest.importorskip("omegaconf")

    class Lit(lightning.LightningModule):
        def __init__(self, cfg: Any) -> None:
            super().__init__()
            self.save_hyperparameters(cfg)
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    torch.manual_seed(0)
    cfg = omegaconf.OmegaConf.create({"model": {"hidden": 3, "act": "relu"}, "optim": {"lr": 0.1}, "seed": 0})
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 1)),
                                       batch_size=4)
    trainer = lightning.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=folder, accelerator="cpu")
    trainer.fit(Lit(cfg), data)
    path = folder / "hydra.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_lightning_hydra_hyper_parameters_survive_a_remap(tmp_path: Path) -> None:
    from ckpttool.io.pickle.globals_policy import classify

    src, out = _lightning_checkpoint(tmp_path), tmp_path / "out.ckpt"
    run = run_cli("remap", src, "-o", out, "--map", "net.0=net.first")
    if classify("typing", "Any") == "dangerous":  # omegaconf's ref_type: refused by name until it is allow-listed
        assert run.returncode == 2 and "typing.Any" in run.stderr and not out.exists()
        return
    assert run.returncode == 0, run.stderr
    got = compare(src, out, {"net.0": "net.first"})
    assert got["problems"] == []
    assert "omegaconf.dictconfig.DictConfig" in got["types"]


def _child_eval(path: Path, expression: str) -> str:
    """``expression`` on ``ck = torch.load(path, weights_only=False)`` in a child with the foreign classes."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE / "foreign"), str(ROOT)]))
    code = f"import sys, torch; ck = torch.load(sys.argv[1], weights_only=False); print({expression})"
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip()


def test_convert_sanitize_writes_mmengine_as_weights_only_data(tmp_path: Path) -> None:
    src, out = FIXTURES / "mmengine_epoch_2.pth", tmp_path / "clean.pth"
    run = run_cli("convert", src, "-o", out, "--sanitize", "--json")
    assert run.returncode == 0, run.stderr
    sanitized = json.loads(run.stdout)["sanitized"]
    hub = torch.load(out, weights_only=True)["message_hub"]
    eta = hub["runtime_info"]["eta"]
    assert type(eta) is float
    assert repr(eta) == _child_eval(src, "repr(float(ck['message_hub']['runtime_info']['eta']))")
    assert _child_eval(src, "type(ck['message_hub']['runtime_info']['eta']).__name__") == "float64"
    refs = [c for c in sanitized if c["was"] == "builtins.getattr"]
    assert len(refs) == 4 and all(c["now"] == "its name as a string" for c in refs)


def test_values_the_reader_shows_as_plain_data_keep_their_class(tmp_path: Path) -> None:
    import pathlib

    import numpy as np

    src = tmp_path / "values.pt"
    torch.save({"shape": torch.Size([2, 3]), "best": np.float64(0.625), "n": np.int64(7),
                "root": pathlib.PurePosixPath("runs/exp"), "device": torch.device("cpu"),
                "w": torch.ones(2)}, src)
    out = tmp_path / "copy.pt"
    assert run_cli("convert", src, "-o", out).returncode == 0
    got = compare(src, out)
    assert got["problems"] == []
    assert {"torch.Size", "numpy.float64", "numpy.int64", "pathlib.PurePosixPath", "torch.device"} <= set(got["types"])
    clean = tmp_path / "clean.pt"
    run = run_cli("convert", src, "-o", clean, "--sanitize", "--json")
    assert run.returncode == 0, run.stderr
    plain = torch.load(clean, weights_only=True)
    assert {k: type(v) for k, v in plain.items() if k != "w"} == {
        "shape": tuple, "best": float, "n": int, "root": str, "device": str}
    assert plain["shape"] == (2, 3) and plain["best"] == 0.625 and plain["n"] == 7 and plain["root"] == "runs/exp"
