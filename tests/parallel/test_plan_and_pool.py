"""Planning units over workers and running them over processes: same results, same order, errors kept."""

from __future__ import annotations

import os

import pytest

from ckpttool.errors import TruncatedFile
from ckpttool.parallel import balance, run_units
from ckpttool.parallel import pool as pool_module


def test_balance_covers_every_unit_once_and_is_deterministic() -> None:
    sizes = [5, 1, 9, 9, 0, 3, 7, 2]
    for workers in (1, 2, 3, 8, 20):
        bins = balance(sizes, workers)
        assert len(bins) == workers
        assert sorted(i for b in bins for i in b) == list(range(len(sizes)))
        assert bins == balance(sizes, workers)
    two = balance(sizes, 2)
    loads = [sum(sizes[i] for i in b) for b in two]
    assert abs(loads[0] - loads[1]) <= max(sizes)


def _square(i: int) -> tuple[int, int]:
    return i * i, os.getpid()


@pytest.fixture
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "MIN_PARALLEL_BYTES", 0)


def test_results_come_back_in_unit_order_from_other_processes(always_parallel: None) -> None:
    seen: list[int] = []
    out = run_units(_square, [3, 1, 4, 1, 5, 9, 2, 6], jobs=2, progress=seen.append)
    assert [v for v, _ in out] == [i * i for i in range(8)]
    assert {pid for _, pid in out} - {os.getpid()}, "no unit ran in a worker process"
    assert sorted(seen) == sorted([3, 1, 4, 1, 5, 9, 2, 6])


def test_one_job_runs_here() -> None:
    out = run_units(_square, [1, 1, 1], jobs=1)
    assert {pid for _, pid in out} == {os.getpid()}


def test_a_failing_unit_raises_its_error_in_the_caller(always_parallel: None) -> None:
    def work(i: int) -> int:
        if i == 3:
            raise TruncatedFile("short read", path="x.safetensors")
        return i

    with pytest.raises(TruncatedFile, match="short read") as info:
        run_units(work, [1] * 6, jobs=2)
    assert str(info.value.path) == "x.safetensors"


def test_ranks_come_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ckpttool.parallel import ranks_from_env

    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    assert ranks_from_env() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert ranks_from_env() is None  # no rendezvous address: not started by torchrun
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    ranks = ranks_from_env()
    assert ranks is not None and (ranks.rank, ranks.world_size, ranks.is_leader) == (2, 4, False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert ranks_from_env() is None


def test_an_incomplete_torchrun_environment_is_one_error_line(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: os.PathLike,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from ckpttool.cli import main
    from tests.conftest import FIXTURES

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert main(["convert", str(FIXTURES / "model1_state_dict.pt"), "-o", f"{tmp_path}/x.safetensors"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ckpttool: error[usage") and "torchrun group" in err and err.count("\n") == 1, err
    assert not os.listdir(tmp_path)
