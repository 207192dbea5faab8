"""Every command on DCP folders written by real process groups; torch's own readers as the oracle."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from ckpttool.cli import main
from ckpttool.io.formats.dcp_metadata import TensorEntry, read_metadata
from tests.dcp.conftest import dcp_load_full


def _full_state(folder: Path) -> dict[str, torch.Tensor]:
    meta = read_metadata(folder)
    shapes = {k: (e.dtype, e.shape) for k, e in meta.entries.items() if isinstance(e, TensorEntry)}
    return dcp_load_full(folder, shapes)  # type: ignore[return-value]


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    rc = main([*args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_inspect_shows_chunks_and_ranks_as_torch_recorded_them(dcp_folders: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from torch.distributed.checkpoint import FileSystemReader

    folder = dcp_folders["mesh2d"]
    md = FileSystemReader(str(folder)).read_metadata()
    rc, doc = _json(capsys, "inspect", str(folder))
    assert rc == 0 and doc["format"] == "dcp"
    for fqn, tmd in md.state_dict_metadata.items():
        assert doc["dcp"]["tensors"][fqn]["chunks"] == len(tmd.chunks)
    ranks = sorted({int(info.relative_path.split("_")[2]) for info in md.storage_data.values()})
    assert doc["dcp"]["ranks"] == ranks == [0, 1, 2, 3]
    assert doc["dcp"]["tensors"]["model.a"]["split_dims"] == [0, 1]
    assert doc["sections"]["model"]["tensors"]["a"] == {"shape": [5, 7], "dtype": "float32", "nbytes": 140}


def test_inspect_finds_the_optimizer_of_an_fsdp_run(dcp_folders: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _json(capsys, "inspect", str(dcp_folders["fsdp"]))
    assert rc == 0 and "optimizer" in doc["sections"]
    assert doc["sections"]["optimizer"]["params_with_state"] == 4


def test_diff_against_a_single_file_of_the_same_weights(dcp_folders: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = dcp_folders["shard1"]
    full = _full_state(folder)
    single = tmp_path / "single.pt"
    torch.save({"model": {k.removeprefix("model."): v for k, v in full.items()}}, single)
    rc, doc = _json(capsys, "diff", str(folder), str(single))
    assert rc == 0 and doc["equal"], doc
    changed = {k.removeprefix("model."): v.clone() for k, v in full.items()}
    changed["w"][1, 7] += 1
    torch.save({"model": changed}, single)
    rc, doc = _json(capsys, "diff", str(folder), str(single))
    assert rc == 1 and [v["key"] for v in doc["value_changed"]] == ["w"]
    assert doc["value_changed"][0]["mismatched"] == 1


def test_diff_against_a_folder_of_another_world_size(dcp_folders: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import torch.distributed.checkpoint as dcp

    folder = dcp_folders["mesh2d"]
    full = _full_state(folder)
    one = tmp_path / "one_rank"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": {k.removeprefix("model."): v for k, v in full.items()}}, checkpoint_id=one, no_dist=True)
    rc, doc = _json(capsys, "diff", str(folder), str(one))
    assert rc == 0 and doc["equal"], doc


def test_convert_to_safetensors_and_pt_gives_what_dcp_load_gives(dcp_folders: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    folder = dcp_folders["fsdp"]
    full = _full_state(folder)
    rc, _ = _json(capsys, "convert", str(folder), "-o", str(tmp_path / "m.safetensors"))
    assert rc == 0
    got = load_file(tmp_path / "m.safetensors")
    assert sorted(got) == sorted(k.removeprefix("model.") for k in full if k.startswith("model."))
    for k, v in got.items():
        assert torch.equal(v, full[f"model.{k}"])
    rc, _ = _json(capsys, "convert", str(folder), "-o", str(tmp_path / "all.pt"))
    assert rc == 0
    whole = torch.load(tmp_path / "all.pt", weights_only=True)
    assert torch.equal(whole["optim"]["state"]["0.weight"]["exp_avg"], full["optim.state.0.weight.exp_avg"])
    assert whole["optim"]["param_groups"][0]["lr"] == 0.01


def test_convert_to_a_shard_set(dcp_folders: dict[str, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    folder = dcp_folders["shard0"]
    full = _full_state(folder)
    out = tmp_path / "hf"
    rc, doc = _json(capsys, "convert", str(folder), "-o", str(out), "--max-shard-size", "150B")
    assert rc == 0 and len(doc["shards"]) >= 2
    index = json.loads((out / "model.safetensors.index.json").read_text())
    got: dict[str, torch.Tensor] = {}
    for name in sorted(set(index["weight_map"].values())):
        got.update(load_file(out / name))
    assert sorted(got) == sorted(k.removeprefix("model.") for k in full)
    for k, v in got.items():
        assert torch.equal(v, full[f"model.{k}"])


def test_extract_ema_from_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = {"conv.weight": torch.randn(4, 3), "fc.weight": torch.randn(2, 4)}
    ema = {k: v + 0.01 for k, v in model.items()}
    folder = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": model, "model_ema": ema, "epoch": 5}, checkpoint_id=folder, no_dist=True)
    rc, doc = _json(capsys, "extract-ema", str(folder), "-o", str(tmp_path / "ema.safetensors"))
    assert rc == 0 and doc["tensors"] == 2
    got = load_file(tmp_path / "ema.safetensors")
    assert all(torch.equal(got[k], ema[k]) for k in ema)
