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
import sys
import types
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


def musgd_groups(model: nn.Module, head: str, split: bool) -> list[dict]:
    """``build_optimizer``'s groups for ultralytics' MuSGD: matrices and conv filters to ``muon`` first,
    then bias / norm weight / weight; with ``split``, each group's head ``cv3`` parameters apart."""
    groups: dict[str, list] = {"weight": [], "bn": [], "bias": [], "muon": []}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            fullname = f"{module_name}.{param_name}" if module_name else param_name
            kind = "muon" if param.ndim in {2, 4} else "bias" if "bias" in fullname else \
                "bn" if isinstance(module, NORMS) else "weight"
            groups[kind].append(param)
    boosted = {id(p) for p in model.get_submodule(f"{head}.cv3").parameters()}
    out = []
    for kind, params in groups.items():
        extra = {"param_group": kind, "use_muon": kind == "muon"}
        if split:
            out.append({"params": [p for p in params if id(p) in boosted], **extra})
            out.append({"params": [p for p in params if id(p) not in boosted], **extra})
        else:
            out.append({"params": params, **extra})
    return out


def _importable(monkeypatch, *objs) -> None:
    """Put the stand-in classes of ``objs`` (and their modules' parents) in ``sys.modules``, so that
    torch.save pickles them by name as ultralytics' own checkpoint does."""
    classes = {type(m) for obj in objs for m in (obj.modules() if isinstance(obj, nn.Module) else [obj])}
    for cls in classes:
        parts = cls.__module__.split(".")
        if parts[0] != "ultralytics":
            continue
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[:n])
            if name not in sys.modules:
                monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        setattr(sys.modules[cls.__module__], cls.__name__, cls)


@pytest.mark.parametrize("split", [True, False])
def test_musgd_groups_follow_a_reordering_remap(tmp_path, capsys, monkeypatch, split):
    orig = torch_load(FIXTURES / "ultralytics_last.pt")
    ema = orig["ema"].float().requires_grad_(True)
    head = "model." + list(ema.model.named_children())[-1][0]
    opt = torch.optim.SGD(musgd_groups(ema, head, split), lr=0.01, momentum=0.9, nesterov=True)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        for p in ema.parameters():
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    with torch.no_grad():  # the file holds the EMA in half precision, as ultralytics saves it
        for p in ema.parameters():
            p.copy_(p.half().float())
    src = tmp_path / "musgd_last.pt"
    saved = copy.deepcopy(ema).half()
    _importable(monkeypatch, saved, saved.args)
    torch.save({"epoch": 1, "model": None, "ema": saved, "updates": 2, "optimizer": opt.state_dict(),
                "train_args": orig["train_args"]}, src)
    target = _reordered(ema, head.split(".")[1])
    ref = tmp_path / "ref.pt"
    torch.save(OrderedDict(target.state_dict()), ref)

    out = tmp_path / "out.pt"
    assert main(["remap", str(src), "-o", str(out), "--like", str(ref), "--json"]) == 0
    (opt_doc,) = json.loads(capsys.readouterr().out)["optimizer"]
    assert opt_doc["recipe"] == "ultralytics MuSGD groups"
    new = torch.load(out, weights_only=True)
    target.load_state_dict({k: v.float() for k, v in new["ema"].items()}, strict=True)
    target.requires_grad_(True)
    o_new = torch.optim.SGD(musgd_groups(target, head, split), lr=0.01, momentum=0.9, nesterov=True)
    o_new.load_state_dict(new["optimizer"])
    for name, p in ema.named_parameters():
        assert torch.equal(opt.state[p]["momentum_buffer"], o_new.state[target.get_parameter(name)]["momentum_buffer"])
    grads = {n: torch.randn(p.shape, generator=g) for n, p in ema.named_parameters()}
    for model, o in ((ema, opt), (target, o_new)):
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
        o.step()
    after = dict(target.named_parameters())
    assert all(torch.equal(p, after[n]) for n, p in ema.named_parameters())
