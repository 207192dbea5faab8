"""A pickled nn.Module yields the state_dict ``module.state_dict()`` gives, in the same order."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import ckpttool
from tests.oracle import digest


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)  # bias None: skipped
        self.bn = nn.BatchNorm2d(4)
        self.register_buffer("scratch", torch.ones(2), persistent=False)  # never in state_dict
        self.register_buffer("table", torch.arange(3))
        self.head = nn.Linear(4, 2)
        self.gate = nn.Parameter(torch.zeros(1))  # registered last, listed first (own params first)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(Block(), nn.ReLU(), Block())
        self.shared = self.stem[0]  # the same module under two names: torch lists it twice
        self.out = nn.Linear(2, 1)


def test_pickled_module_state_dict_order_and_kinds(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Net()
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    ours = ckpttool.open(path).state_dict()
    expected = net.state_dict()
    assert list(ours) == list(expected)
    assert all(ours[k].digest() == digest(v) for k, v in expected.items())
    assert ours.parameters == {k for k, _ in net.named_parameters(remove_duplicate=False)}
    assert ours.kind_of("stem.0.bn.running_mean") == "buffer"


def test_state_dict_version_metadata_kept(tmp_path: Path) -> None:
    net = Net()
    path = tmp_path / "sd.pt"
    torch.save(net.state_dict(), path)
    ours = ckpttool.open(path).state_dict()
    expected = net.state_dict()._metadata
    assert ours.version_metadata is not None
    assert {k: dict(v) for k, v in ours.version_metadata.items()} == {k: dict(v) for k, v in expected.items()}
