"""Helpers for the extract-ema tests: run the command in-process and read back what it wrote."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from ckpttool.cli import main


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def codes(self) -> list[str]:
        return [f["code"] for f in self.json["findings"]]


def load_output(path: Path) -> dict[str, torch.Tensor]:
    """What ckpttool wrote, read back by torch / safetensors themselves."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_bit_identical(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], *, ordered: bool = True
                         ) -> None:
    """Same keys (in the same order unless safetensors, which sorts them), dtypes, shapes and bytes."""
    assert list(got) == list(want) if ordered else sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert torch.equal(_bytes(got[key]), _bytes(value)), key


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``cli("extract-ema", path, ...)``: the exit code and what went to stdout / stderr."""
    def run(*args: Any) -> Run:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)
    return run
