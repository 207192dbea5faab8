"""``--preset weight-norm``: torch's old and new weight-norm keys, checked by loading into a module
built each way (``torch.nn.utils.weight_norm`` vs ``torch.nn.utils.parametrizations.weight_norm``)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from ckpttool.ops.remap import plan, preset
from tests.conftest import run_cli


def _net(style: str) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Conv1d(4, 3, 1), nn.Flatten(), nn.Linear(3 * 6, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the old function is deprecated, which is the point
        for i in (0, 2, 4):
            if style == "old":
                nn.utils.weight_norm(net[i])
            else:
                nn.utils.parametrizations.weight_norm(net[i])
    return net


X = torch.randn(2, 2, 8, generator=torch.Generator().manual_seed(1))


def _trained(style: str) -> nn.Module:
    net = _net(style)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net


@pytest.mark.parametrize("src_style, dst_style, name", [("old", "new", "weight-norm"),
                                                          ("new", "old", "weight-norm:legacy")])
def test_remapped_state_dict_loads_strict_into_the_other_spelling(tmp_path, src_style, dst_style, name):
    src = _trained(src_style)
    torch.save(src.state_dict(), tmp_path / "in.pt")
    result = run_cli("remap", tmp_path / "in.pt", "-o", tmp_path / "out.pt", "--preset", name)
    assert result.returncode == 0, result.stderr
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    dst = _net(dst_style)
    assert list(out) == list(dst.state_dict())  # same keys, same order, no compatibility hook needed
    dst.load_state_dict(out, strict=True)
    assert torch.equal(dst(X), src(X))


def test_round_trip_is_bit_identical(tmp_path):
    sd = _trained("old").state_dict()
    torch.save(sd, tmp_path / "old.pt")
    assert run_cli("remap", tmp_path / "old.pt", "-o", tmp_path / "new.pt", "--preset", "weight-norm").returncode == 0
    assert run_cli("remap", tmp_path / "new.pt", "-o", tmp_path / "back.pt",
                   "--preset", "weight-norm:legacy").returncode == 0
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back) == list(sd) and all(torch.equal(back[k], v) for k, v in sd.items())


def test_training_dict_moves_optimizer_state_with_the_keys(tmp_path):
    net = _trained("old")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(X).sum().backward()
    opt.step()
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, tmp_path / "train.pt")
    result = run_cli("remap", tmp_path / "train.pt", "-o", tmp_path / "new.pt", "--preset", "weight-norm")
    assert result.returncode == 0, result.stderr
    ckpt = torch.load(tmp_path / "new.pt", weights_only=True)
    dst = _net("new")
    dst.load_state_dict(ckpt["model"], strict=True)
    new_opt = torch.optim.Adam(dst.parameters(), lr=1e-3)
    new_opt.load_state_dict(ckpt["optimizer"])
    # parameters keep their positions: the Adam moments of each tensor are where they were
    for old_p, new_p in zip(net.parameters(), dst.parameters()):
        assert torch.equal(opt.state[old_p]["exp_avg"], new_opt.state[new_p]["exp_avg"])


def test_dry_run_mapping_and_other_keys_untouched():
    keys = ["0.bias", "0.weight_g", "0.weight_v", "enc.weight_gate", "weight_g", "fc.weight"]
    p = plan(keys, preset("weight-norm", None))
    assert p.forward == {"0.bias": "0.bias", "0.weight_g": "0.parametrizations.weight.original0",
                         "0.weight_v": "0.parametrizations.weight.original1", "enc.weight_gate": "enc.weight_gate",
                         "weight_g": "parametrizations.weight.original0", "fc.weight": "fc.weight"}
    back = plan(list(p.forward.values()), preset("weight-norm:legacy", None))
    assert list(back.forward.values()) == keys


def test_dry_run_json_names_the_preset(tmp_path):
    torch.save(_net("old").state_dict(), tmp_path / "in.pt")
    result = run_cli("remap", tmp_path / "in.pt", "--preset", "weight-norm", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    reasons = {m["from"]: m["reason"] for m in json.loads(result.stdout)["mapping"]}
    assert reasons["0.weight_g"] == "preset weight-norm" and reasons["0.bias"] == "unchanged"


def test_unknown_direction_is_a_usage_error(tmp_path):
    torch.save(_net("old").state_dict(), tmp_path / "in.pt")
    result = run_cli("remap", tmp_path / "in.pt", "--preset", "weight-norm:sideways", "--dry-run")
    assert result.returncode == 2 and "weight-norm:legacy" in result.stderr
