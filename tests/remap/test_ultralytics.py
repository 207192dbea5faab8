"""Ultralytics training checkpoints: the optimizer state follows its parameters through a remap.

ultralytics' trainer builds three groups (biases; other weights, decayed; weights of norm layers)
from ``named_modules()`` and always freezes ``.dfl``; ``ultralytics_last.pt`` lists 22 ids for its
23 parameters (the frozen one left out), the real ``gpu/ultralytics_real_last.pt`` lists all of
them, in another group order. The oracle rebuilds the EMA module with torch, groups it as the
trainer does, loads the optimizer state into a real torch optimizer before and after the remap and
takes the same step with both.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from ckpttool.cli import main
from tests.conftest import FIXTURES
from tests.oracle import torch_load

NORMS = tuple(v for k, v in nn.__dict__.items() if "Norm" in k)
CASES = {  # fixture: (optimizer class, group order, names the trainer left out of its groups)
    "ultralytics_last.pt": (torch.optim.SGD, ("bias", "weight", "bn"), (".dfl",)),
    "gpu/ultralytics_real_last.pt": (torch.optim.AdamW, ("weight", "bn", "bias"), ()),
}


def trainer_groups(model: nn.Module, order: tuple[str, ...], left_out: tuple[str, ...]) -> list[dict]:
    """The parameter groups of ultralytics' ``BaseTrainer.build_optimizer``, in ``order``."""
    groups: dict[str, list] = {"weight": [], "bn": [], "bias": []}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            fullname = f"{module_name}.{param_name}" if module_name else param_name
            if any(x in fullname for x in left_out):
                continue
            kind = "bias" if "bias" in fullname else "bn" if isinstance(module, NORMS) else "weight"
            groups[kind].append(param)
    return [{"params": groups[k]} for k in order]


def _reordered(ema: nn.Module, first: str) -> nn.Module:
    """The same network with layer ``first`` of ``model`` registered before the others."""
    out = nn.Module()
    out.model = nn.Module()
    names = [first] + [n for n, _ in ema.model.named_children() if n != first]
    for name in names:
        out.model.add_module(name, copy.deepcopy(ema.model.get_submodule(name)))
    return out


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_optimizer_follows_a_reordering_remap(tmp_path, capsys, fixture):
    opt_cls, order, left_out = CASES[fixture]
    orig = torch_load(FIXTURES / fixture)
    ema = orig["ema"].float()
    first = list(ema.model.named_children())[-1][0]  # the detection head
    target = _reordered(ema, first)
    ref = tmp_path / "ref.pt"
    torch.save(OrderedDict(target.state_dict()), ref)

    out = tmp_path / "out.pt"
    assert main(["remap", str(FIXTURES / fixture), "-o", str(out), "--like", str(ref), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (opt_doc,) = doc["optimizer"]
    assert opt_doc["remapped"] and opt_doc["recipe"].startswith("ultralytics groups")
    assert not any(f["code"] == "remap.optimizer-unmapped" for f in doc["findings"])

    new = torch.load(out, map_location="cpu", weights_only=True)
    assert next(iter(new["ema"])).startswith(f"model.{first}.")
    target.load_state_dict({k: v.float() for k, v in new["ema"].items()}, strict=True)
    for model in (ema, target):
        model.requires_grad_(True)
    o_old = opt_cls(trainer_groups(ema, order, left_out))
    o_new = opt_cls(trainer_groups(target, order, left_out))
    o_old.load_state_dict(orig["optimizer"])
    o_new.load_state_dict(new["optimizer"])
    names = [n for n, _ in ema.named_parameters() if not any(x in n for x in left_out)]
    with_state = [n for n in names if ema.get_parameter(n) in o_old.state]
    assert len(with_state) >= len(names) - 1
    for name in with_state:
        a, b = o_old.state[ema.get_parameter(name)], o_new.state[target.get_parameter(name)]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    g = torch.Generator().manual_seed(0)
    grads = {n: torch.randn(p.shape, generator=g) for n, p in ema.named_parameters()}
    for model, opt in ((ema, o_old), (target, o_new)):
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
        opt.step()
    after_old, after_new = dict(ema.named_parameters()), dict(target.named_parameters())
    for name in names:
        assert torch.equal(after_old[name], after_new[name]), name


def test_frozen_parameter_keeps_no_optimizer_slot(tmp_path):
    """A plain rename: 22 ids stay 22, and the frozen DFL weight is still outside every group."""
    out = tmp_path / "out.pt"
    assert main(["remap", str(FIXTURES / "ultralytics_last.pt"), "-o", str(out), "--map", "model.2=head"]) == 0
    orig, new = torch_load(FIXTURES / "ultralytics_last.pt"), torch.load(out, weights_only=True)
    assert [len(g["params"]) for g in new["optimizer"]["param_groups"]] == [8, 8, 6]
    assert "head.dfl.conv.weight" in new["ema"]
    for a, b in zip(orig["optimizer"]["param_groups"], new["optimizer"]["param_groups"]):
        assert {k: v for k, v in a.items() if k != "params"} == {k: v for k, v in b.items() if k != "params"}
    assert all(torch.equal(orig["optimizer"]["state"][i]["momentum_buffer"], s["momentum_buffer"])
               for i, s in new["optimizer"]["state"].items())
