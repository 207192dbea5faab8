"""EMA states built here with the real libraries (ema-pytorch, torch-ema, AveragedModel), in tmp_path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: N812 - the torch convention

from fixtures.reference_models import BNModel, Model1
from tests.ema.conftest import assert_bit_identical, load_output


def train_steps(model: nn.Module, after_step, steps: int = 3, seed: int = 0) -> None:
    """A few SGD steps on random data, calling ``after_step()`` after each (the EMA update)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        after_step()


def test_ema_pytorch_file_without_online_model(tmp_path: Path, cli) -> None:
    EMA = pytest.importorskip("ema_pytorch").EMA  # noqa: N806 - the library's class name

    torch.manual_seed(0)
    model = BNModel()
    ema = EMA(model, beta=0.9, update_after_step=0, update_every=1, include_online_model=False)
    train_steps(model, ema.update)
    torch.save(ema.state_dict(), tmp_path / "ema.pt")
    run = cli("extract-ema", tmp_path / "ema.pt", "-o", tmp_path / "out.safetensors", "--json")
    assert run.code == 0, run.err
    assert run.json["layout"] == "ema-pytorch" and run.json["updates"] == 3
    assert "ema.no-raw-weights" in run.codes  # no online_model saved: nothing to compare with
    got = load_output(tmp_path / "out.safetensors")
    assert_bit_identical(got, ema.ema_model.state_dict(), ordered=False)
    BNModel().load_state_dict(got, strict=True)


def test_ema_pytorch_file_with_online_model(tmp_path: Path, cli) -> None:
    EMA = pytest.importorskip("ema_pytorch").EMA  # noqa: N806 - the library's class name

    torch.manual_seed(1)
    model = BNModel()
    ema = EMA(model, beta=0.9, update_after_step=0, update_every=1)
    train_steps(model, ema.update)
    torch.save(ema.state_dict(), tmp_path / "ema.pt")
    run = cli("extract-ema", tmp_path / "ema.pt", "-o", tmp_path / "out.pt", "--json")
    assert run.code == 0, run.err
    assert run.json["distance"]["max_abs"] > 0 and run.json["model_source"] == "online_model.*"
    assert_bit_identical(load_output(tmp_path / "out.pt"), ema.ema_model.state_dict())


def test_averaged_model_nested_in_a_training_dict(tmp_path: Path, cli) -> None:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(2)
    model = Model1()
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    train_steps(model, lambda: averaged.update_parameters(model))
    torch.save({"epoch": 1, "model": model.state_dict(), "ema": averaged.state_dict()}, tmp_path / "ck.pt")
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "out.pt", "--json")
    assert run.code == 0, run.err
    assert run.json["layout"] == "averaged-model" and run.json["updates"] == 3
    assert run.json["source"] == "ema.module.*"
    got = load_output(tmp_path / "out.pt")
    assert_bit_identical(got, averaged.module.state_dict())
    Model1().load_state_dict(got, strict=True)


def test_torch_ema_maps_by_position_and_copies_buffers(tmp_path: Path, cli) -> None:
    ExponentialMovingAverage = pytest.importorskip("torch_ema").ExponentialMovingAverage  # noqa: N806

    torch.manual_seed(3)
    model = BNModel()
    ema = ExponentialMovingAverage(model.parameters(), decay=0.5)
    train_steps(model, ema.update)
    torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, tmp_path / "ck.pt")
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "out.pt", "--json")
    assert run.code == 0, run.err
    assert run.json["decay"] == 0.5 and run.json["coverage"]["buffers_copied"] == [
        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    with ema.average_parameters(model.parameters()):
        want = copy.deepcopy(model.state_dict())
    assert_bit_identical(load_output(tmp_path / "out.pt"), want)


def test_torch_ema_over_a_subset_of_repeated_shapes_is_refused(tmp_path: Path, cli) -> None:
    ExponentialMovingAverage = pytest.importorskip("torch_ema").ExponentialMovingAverage  # noqa: N806

    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    ema = ExponentialMovingAverage([*model[0].parameters(), *model[2].parameters()], decay=0.9)
    torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, tmp_path / "ck.pt")
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "out.pt", "--json")
    assert run.code == 1
    assert "ema.unmappable" in run.codes and not (tmp_path / "out.pt").exists()


def test_litema_names_that_collide_without_dots_are_refused(tmp_path: Path, cli) -> None:
    sd = {"model.blocks.1.10.weight": torch.ones(2), "model.blocks.11.0.weight": torch.zeros(2),
          "model_ema.decay": torch.tensor(0.999), "model_ema.num_updates": torch.tensor(5, dtype=torch.int),
          "model_ema.blocks110weight": torch.full((2,), 0.5)}
    torch.save({"state_dict": sd, "global_step": 5}, tmp_path / "sd.ckpt")
    listing = cli("extract-ema", tmp_path / "sd.ckpt", "--list", "--json")
    assert listing.code == 0
    (cand,) = listing.json["candidates"]
    assert "model.blocks.1.10.weight" in cand["problems"][0] and "model.blocks.11.0.weight" in cand["problems"][0]
    run = cli("extract-ema", tmp_path / "sd.ckpt", "-o", tmp_path / "out.safetensors", "--json")
    assert run.code == 1 and "ema.unmappable" in run.codes
    assert not (tmp_path / "out.safetensors").exists()


def test_fp16_ema_of_fp32_model_warns_and_dtype_casts(tmp_path: Path, cli) -> None:
    torch.manual_seed(5)
    model = BNModel()
    ema = copy.deepcopy(model).half()
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.5)
    torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, tmp_path / "ck.pt")
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "out.pt", "--json")
    assert run.code == 0 and "ema.dtype-differs" in run.codes
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "out32.pt", "--dtype", "fp32", "--json")
    got = load_output(tmp_path / "out32.pt")
    assert got["conv.weight"].dtype == torch.float32 and got["bn.num_batches_tracked"].dtype == torch.int64
    assert torch.equal(got["conv.weight"], ema.state_dict()["conv.weight"].float())


def test_incomplete_coverage_warns_and_keeps_every_model_key(tmp_path: Path, cli) -> None:
    torch.manual_seed(6)
    model = Model1()
    ema = {k: v * 0.5 for k, v in model.state_dict().items() if not k.startswith("conv_a.")}
    torch.save({"model": model.state_dict(), "model_ema": ema}, tmp_path / "ck.pt")
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "out.pt", "--json")
    assert run.code == 0 and "ema.incomplete-coverage" in run.codes
    assert run.json["coverage"]["parameters_missing"] == ["conv_a.weight", "conv_a.bias"]
    got = load_output(tmp_path / "out.pt")
    assert list(got) == list(model.state_dict())
    assert torch.equal(got["conv_a.weight"], model.conv_a.weight) and torch.equal(got["fc1.bias"], ema["fc1.bias"])


def test_ema_with_a_ddp_prefix_is_aligned_to_the_model_keys(tmp_path: Path, cli) -> None:
    torch.manual_seed(7)
    model = Model1()
    ema = {"module." + k: v + 1 for k, v in model.state_dict().items()}
    torch.save({"state_dict": model.state_dict(), "state_dict_ema": ema, "arch": "m1"}, tmp_path / "ck.pth.tar")
    run = cli("extract-ema", tmp_path / "ck.pth.tar", "-o", tmp_path / "out.pt", "--json")
    assert run.code == 0, run.err
    assert "ema.extra-keys" not in run.codes and run.json["coverage"]["from_ema"] == len(ema)
    assert_bit_identical(load_output(tmp_path / "out.pt"), {k.removeprefix("module."): v for k, v in ema.items()})
