"""Optimizer state follows its parameters: several groups, Lightning, Adam, reordering, dropping."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: N812 - torch's own idiom

from ckpttool.cli import main
from fixtures.reference_models import BNModel, Model1, Model2
from tests.conftest import FIXTURES
from tests.oracle import torch_load

LAYOUT = FIXTURES / "model1_to_model2.toml"


class Model1NoA(Model1):
    """Model1 without the unused conv_a: what Model2 maps back to by name."""

    def __init__(self) -> None:
        super().__init__()
        del self.conv_a


def yolov5_groups(model: nn.Module) -> torch.optim.SGD:
    """YOLOv5 smart_optimizer's three groups (biases, decayed weights, norm weights), as the fixture."""
    g: tuple[list, list, list] = ([], [], [])
    bn = tuple(v for k, v in nn.__dict__.items() if "Norm" in k)
    for v in model.modules():
        for name, p in v.named_parameters(recurse=False):
            (g[2] if name == "bias" else g[1] if name == "weight" and isinstance(v, bn) else g[0]).append(p)
    opt = torch.optim.SGD(g[2], lr=0.01, momentum=0.937, nesterov=True)
    opt.add_param_group({"params": g[0], "weight_decay": 0.0005})
    opt.add_param_group({"params": g[1], "weight_decay": 0.0})
    return opt


def _batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)


def _same_step(m_a, o_a, m_b, o_b, pairs):
    x, y = _batch()
    for m, o in ((m_a, o_a), (m_b, o_b)):
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
        o.step()
    a, b = m_a.state_dict(), m_b.state_dict()
    for ka, kb in pairs.items():
        assert torch.allclose(a[ka], b[kb], rtol=0, atol=1e-7), (ka, kb)


def test_three_yolov5_groups_back_to_named(tmp_path):
    out = tmp_path / "m1.pt"
    assert main(["remap", str(FIXTURES / "model2_train.pt"), "-o", str(out), "--to", "named",
                 "--layout", str(LAYOUT)]) == 0
    orig, new = torch_load(FIXTURES / "model2_train.pt"), torch.load(out, weights_only=True)
    m2, m1 = Model2(), Model1NoA()
    m2.load_state_dict({k: v.float() for k, v in orig["model"].state_dict().items()})
    m1.load_state_dict({k: v.float() for k, v in new["model"].items()}, strict=True)
    o2, o1 = yolov5_groups(m2), yolov5_groups(m1)
    o2.load_state_dict(orig["optimizer"])
    o1.load_state_dict(new["optimizer"])
    assert [len(g["params"]) for g in new["optimizer"]["param_groups"]] == [5, 5, 0]
    pairs = {"backbone.0.weight": "conv1.weight", "backbone.0.bias": "conv1.bias",
             "backbone.3.weight": "conv2.weight", "backbone.3.bias": "conv2.bias",
             **{f"{m}.{leaf}": f"{m}.{leaf}" for m in ("fc1", "fc5", "fc3") for leaf in ("weight", "bias")}}
    _same_step(m2, o2, m1, o1, pairs)


def test_lightning_state_dict_and_optimizer_states(tmp_path):
    layout = tmp_path / "layout.toml"
    layout.write_text('drop = ["model.conv_a"]\n[sequential]\n"model.backbone" = '
                      '["model.conv1", "relu", "pool", "model.conv2", "relu", "pool"]\n')
    out = tmp_path / "l2.ckpt"
    assert main(["remap", str(FIXTURES / "lightning.ckpt"), "-o", str(out), "--to", "sequential",
                 "--layout", str(layout)]) == 0
    orig, new = torch.load(FIXTURES / "lightning.ckpt", weights_only=False), torch.load(out, weights_only=False)
    assert set(new) == set(orig) and new["loops"] == orig["loops"] and new["epoch"] == orig["epoch"]
    m1, m2 = Model1(), Model2()
    m1.load_state_dict({k.removeprefix("model."): v for k, v in orig["state_dict"].items()})
    m2.load_state_dict({k.removeprefix("model."): v for k, v in new["state_dict"].items()}, strict=True)
    hp = {k: v for k, v in orig["optimizer_states"][0]["param_groups"][0].items() if k in ("lr", "momentum")}
    o1, o2 = torch.optim.SGD(m1.parameters(), **hp), torch.optim.SGD(m2.parameters(), **hp)
    o1.load_state_dict(orig["optimizer_states"][0])
    o2.load_state_dict(new["optimizer_states"][0])
    _same_step(m1, o1, m2, o2, {"conv1.weight": "backbone.0.weight", "conv2.bias": "backbone.3.bias",
                                "fc3.weight": "fc3.weight"})


def test_lightning_swa_callback_weights_are_remapped(tmp_path):
    out = tmp_path / "swa.ckpt"
    assert main(["remap", str(FIXTURES / "lightning_swa.ckpt"), "-o", str(out), "--add-prefix", "net"]) == 0
    new = torch.load(out, weights_only=False)
    avg = next(v for k, v in new["callbacks"].items() if k.startswith("StochasticWeightAveraging"))
    assert all(k.startswith("net.model.") for k in avg["average_model_state"])
    assert all(k.startswith("net.model.") for k in new["state_dict"])


def test_adam_reordered_to_target_order_and_buffers_told_apart(tmp_path, capsys):
    """generic_train.pt (BNModel + Adam): aligned to a target that registers fc before conv."""

    class Reordered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(8, 10)
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.norm = nn.BatchNorm2d(8)

        def forward(self, x):
            x = F.relu(self.norm(self.stem(x)))
            return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    ref = tmp_path / "ref.pt"
    torch.save(Reordered().state_dict(), ref)
    out = tmp_path / "out.pt"
    assert main(["remap", str(FIXTURES / "generic_train.pt"), "-o", str(out), "--like", str(ref),
                 "--map", "conv=stem", "--map", "bn=norm", "--map", "fc=head", "--strict", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any(f["code"] == "remap.optimizer-guess" for f in doc["findings"])
    orig, new = torch.load(FIXTURES / "generic_train.pt", weights_only=True), torch.load(out, weights_only=True)
    m_old, m_new = BNModel(), Reordered()
    m_old.load_state_dict(orig["model_state_dict"])
    m_new.load_state_dict(new["model_state_dict"], strict=True)
    Reordered().load_state_dict(new["model_ema"], strict=True)
    lr = orig["optimizer_state_dict"]["param_groups"][0]["lr"]
    o_old, o_new = torch.optim.Adam(m_old.parameters(), lr=lr), torch.optim.Adam(m_new.parameters(), lr=lr)
    o_old.load_state_dict(orig["optimizer_state_dict"])
    o_new.load_state_dict(new["optimizer_state_dict"])
    assert torch.equal(o_old.state[m_old.fc.weight]["exp_avg"], o_new.state[m_new.head.weight]["exp_avg"])
    m_old.eval(), m_new.eval()
    _same_step(m_old, o_old, m_new, o_new, {"conv.weight": "stem.weight", "fc.bias": "head.bias",
                                            "bn.weight": "norm.weight"})


def test_unfitting_optimizer_is_left_alone_with_a_finding_or_dropped(tmp_path, capsys):
    src = tmp_path / "odd.pt"
    m = BNModel()
    opt = torch.optim.SGD(list(m.parameters())[:3], lr=0.1, momentum=0.9)  # only some parameters
    torch.save({"model": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, src)
    out = tmp_path / "out.pt"
    assert main(["remap", str(src), "-o", str(out), "--add-prefix", "net", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any(f["code"] == "remap.optimizer-unmapped" for f in doc["findings"])
    assert torch.load(out, weights_only=True)["optimizer"] == opt.state_dict()
    out2 = tmp_path / "out2.pt"
    assert main(["remap", str(src), "-o", str(out2), "--add-prefix", "net", "--drop-optimizer"]) == 0
    assert set(torch.load(out2, weights_only=True)) == {"model", "epoch"}


class FcFirst(nn.Module):
    """Model1 with the fully connected layers registered before the convolutions.

    Its parameters (and the optimizer's ids) run fc1, fc5, fc3, conv1, conv2, conv_a while Model2's
    run backbone.0, backbone.3, fc1, fc5, fc3: alignment has to reorder the optimizer state too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc5 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.conv_a = nn.Conv2d(3, 6, 5)  # never used: no gradient, no momentum

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(F.relu(self.fc5(x)))


@pytest.mark.parametrize("stored", ["state_dict", "module"])
def test_aligned_optimizer_follows_parameters_registered_fc_first(tmp_path, stored):
    torch.manual_seed(11)
    m1 = FcFirst()
    o1 = torch.optim.SGD(m1.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(5)
    for _ in range(2):
        x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
        o1.zero_grad()
        F.cross_entropy(m1(x), y).backward()
        o1.step()
    src = tmp_path / "fc_first.pt"
    torch.save({"model": m1.state_dict() if stored == "state_dict" else m1, "optimizer": o1.state_dict(),
                "epoch": 2}, src)
    out = tmp_path / "m2.pt"
    assert main(["remap", str(src), "-o", str(out), "--like", str(FIXTURES / "model2_state_dict.pt")]) == 0
    new = torch.load(out, weights_only=True)
    m2 = Model2()
    m2.load_state_dict(new["model"], strict=True)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.01, momentum=0.9)
    o2.load_state_dict(new["optimizer"])
    pairs = {f"{a}.{leaf}": f"{b}.{leaf}" for a, b in (("conv1", "backbone.0"), ("conv2", "backbone.3"),
                                                       ("fc1", "fc1"), ("fc5", "fc5"), ("fc3", "fc3"))
             for leaf in ("weight", "bias")}
    for k1, k2 in pairs.items():
        buf1 = o1.state[m1.get_parameter(k1)]["momentum_buffer"]
        assert torch.equal(buf1, o2.state[m2.get_parameter(k2)]["momentum_buffer"]), k1
    assert len(o2.state) == len(pairs)  # conv_a had no state and is gone with its module
    _same_step(m1, o1, m2, o2, pairs)
