"""rewrite_module: a pickled torch module with tensors renamed or dropped in place, checked against torch."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ckpttool.io import open_checkpoint
from ckpttool.io.write.checkpoint import write_checkpoint
from ckpttool.module_rewrite import rewrite_module


def _model() -> nn.Module:
    torch.manual_seed(0)
    shared = nn.Linear(3, 3)
    return nn.Sequential(OrderedDict(stem=nn.Conv2d(1, 2, 3), body=nn.Sequential(nn.BatchNorm2d(2), nn.ReLU()),
                                     a=shared, b=shared, head=nn.Linear(2, 1)))


def _rewrite(tmp_path: Path, forward: dict[str, str]) -> nn.Module | None:
    src = tmp_path / "m.pt"
    torch.save({"model": _model()}, src)
    ckpt = open_checkpoint(src)
    new = rewrite_module(ckpt.tree["model"], forward)
    if new is None:
        return None
    out = tmp_path / "out.pt"
    write_checkpoint({"model": new}, out, force=True)
    return torch.load(out, weights_only=False)["model"]


def test_children_and_parameters_are_renamed_in_place(tmp_path: Path) -> None:
    keys = list(_model().state_dict())
    forward = {k: k.replace("body.0.", "body.norm.").replace("head.weight", "head.w") for k in keys}
    got = _rewrite(tmp_path, forward)
    want = _model()
    want.body._modules = OrderedDict(("norm" if k == "0" else k, v) for k, v in want.body._modules.items())
    want.head._parameters = OrderedDict(("w" if k == "weight" else k, v) for k, v in want.head._parameters.items())
    assert type(got) is nn.Sequential and list(got.state_dict()) == list(want.state_dict())
    assert all(torch.equal(got.state_dict()[k], v) for k, v in want.state_dict().items())
    assert got.a is got.b  # the shared submodule stays shared
    assert isinstance(got.stem.weight, nn.Parameter) and type(got.body.norm) is nn.BatchNorm2d


def test_dropped_keys_leave_their_slots(tmp_path: Path) -> None:
    forward = {k: k for k in _model().state_dict() if not k.startswith("head.")}
    got = _rewrite(tmp_path, forward)
    assert got is not None and list(got.state_dict()) == list(forward)
    assert type(got.head) is nn.Linear and dict(got.head.named_parameters()) == {}


def test_a_move_under_another_parent_has_no_module_form(tmp_path: Path) -> None:
    keys = list(_model().state_dict())
    assert _rewrite(tmp_path, {k: "net." + k for k in keys}) is None
    assert _rewrite(tmp_path, {k: k.replace("stem.", "body.stem.") for k in keys}) is None
