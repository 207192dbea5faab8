"""Multi-file inputs and outputs: torch.distributed.checkpoint folders and HF Trainer folders."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import ckpttool
from ckpttool.cli import main
from ckpttool.ops.convert import ConvertOptions, convert

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _dcp_folder(tmp_path: Path) -> tuple[Path, dict]:
    import torch.distributed.checkpoint as dcp

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 7, "extra": {"name": "run"}}
    folder = tmp_path / "dcp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=folder, no_dist=True)
    return folder, state


def test_dcp_metadata_is_read_without_torch_data(tmp_path: Path) -> None:
    folder, state = _dcp_folder(tmp_path)
    ckpt = ckpttool.open(folder)
    assert ckpt.format == "dcp"
    sd = ckpt.state_dict("model")
    assert list(sd) == list(state["model"])
    for key, value in state["model"].items():
        assert sd[key].dtype == str(value.dtype).removeprefix("torch.") and sd[key].shape == tuple(value.shape)
        assert torch.equal(sd[key].to_torch(), value)


def test_dcp_to_single_file_and_back(tmp_path: Path) -> None:
    folder, state = _dcp_folder(tmp_path)
    single = tmp_path / "single.pt"
    convert(folder, single)
    got = torch.load(single, weights_only=True)
    assert got["epoch"] == 7 and got["extra"] == {"name": "run"}
    for key, value in state["model"].items():
        assert torch.equal(got["model"][key], value)
    assert got["optim"]["param_groups"][0]["lr"] == 0.1
    again = tmp_path / "again"
    result = convert(single, again)
    assert result.output_format == "dcp" and ckpttool.open(again).format == "dcp"
    back = tmp_path / "back.pt"
    convert(again, back)
    twice = torch.load(back, weights_only=True)
    for key, value in state["model"].items():
        assert torch.equal(twice["model"][key], value) and twice["model"][key].dtype == value.dtype


def test_dcp_to_safetensors(tmp_path: Path) -> None:
    folder, state = _dcp_folder(tmp_path)
    out = tmp_path / "m.safetensors"
    convert(folder, out)
    got = load_file(out)
    assert set(got) == set(state["model"]) and all(torch.equal(got[k], v) for k, v in state["model"].items())


def test_dcp_output_refuses_existing_folder(tmp_path: Path) -> None:
    folder, _ = _dcp_folder(tmp_path)
    (tmp_path / "exists").mkdir()
    assert main(["convert", str(FIXTURES / "generic_train.pt"), "-o", str(tmp_path / "exists")]) == 2
    assert not list((tmp_path / "exists").iterdir())
    assert main(["convert", str(FIXTURES / "generic_train.pt"), "-o", str(folder), "--force"]) == 0
    assert ckpttool.open(folder).state_dict("model")


def _trainer_folder(tmp_path: Path) -> tuple[Path, dict]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    folder = tmp_path / "checkpoint-500"
    folder.mkdir()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, folder / "model.safetensors", metadata={"format": "pt"})
    torch.save(opt.state_dict(), folder / "optimizer.pt")
    torch.save(torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0).state_dict(), folder / "scheduler.pt")
    torch.save({"cpu": torch.get_rng_state()}, folder / "rng_state.pth")
    torch.save(argparse.Namespace(learning_rate=1e-3, output_dir="out"), folder / "training_args.bin")
    (folder / "trainer_state.json").write_text(json.dumps({"epoch": 1.5, "global_step": 500}))
    return folder, sd


def test_hf_trainer_folder_reads_as_one_checkpoint(tmp_path: Path) -> None:
    folder, sd = _trainer_folder(tmp_path)
    ckpt = ckpttool.open(folder)
    assert ckpt.format == "hf-trainer"
    assert {"model", "optimizer", "scheduler"} <= set(ckpt.sections)
    assert ckpt.tree["global_step"] == 500 and ckpt.tree["epoch"] == 1.5
    assert set(ckpt.state_dict("model")) == set(sd)


def test_hf_trainer_folder_convert(tmp_path: Path) -> None:
    folder, sd = _trainer_folder(tmp_path)
    out = tmp_path / "m.safetensors"
    convert(folder, out)
    got = load_file(out)
    assert all(torch.equal(got[k], v) for k, v in sd.items())
    full = tmp_path / "full.pt"
    result = convert(folder, full, ConvertOptions(sanitize=True))
    assert [c.was for c in result.changes] == ["argparse.Namespace"]
    loaded = torch.load(full, weights_only=True)
    assert loaded["training_args"] == {"learning_rate": 1e-3, "output_dir": "out"}
    assert loaded["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)


def test_an_unknown_folder_is_still_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path), "-o", str(tmp_path / "x.pt")]) == 2
    assert "directory" in capsys.readouterr().err


class _Payload:
    def __reduce__(self) -> tuple:
        import os

        return (os.system, ("touch ckpttool_marker_pwned",))


def test_dcp_metadata_with_a_payload_is_never_handed_to_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import pickle

    from ckpttool.errors import UnsafeContent

    folder, _ = _dcp_folder(tmp_path)
    with (folder / ".metadata").open("rb") as f:  # written just above by torch itself
        md = pickle.load(f)
    md.storage_meta = _Payload()
    (folder / ".metadata").write_bytes(pickle.dumps(md))
    monkeypatch.chdir(tmp_path)
    ckpt = ckpttool.open(folder)
    assert ckpt.dangerous
    with pytest.raises(UnsafeContent):
        ckpt.state_dict("model")["0.weight"].to_torch()
    assert main(["convert", str(folder), "-o", str(tmp_path / "x.pt")]) == 2
    assert "unsafe" in capsys.readouterr().err
    assert not (tmp_path / "ckpttool_marker_pwned").exists() and not (tmp_path / "x.pt").exists()
