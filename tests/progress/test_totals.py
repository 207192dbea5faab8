"""The library's progress callbacks add up to the job: bytes written plus the same bytes read back.

Expected totals come from the outputs as torch, safetensors and torch.distributed.checkpoint read
them, not from ckpttool: every tensor byte the output holds is counted twice (write, verify).
"""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path

import pytest
import torch

from ckpttool.ops.convert import ConvertOptions, convert
from ckpttool.parallel import pool as pool_module
from ckpttool.parallel import run_units
from ckpttool.parallel.relay import Relay
from ckpttool.progress import Tally


@pytest.fixture(autouse=True)
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "MIN_PARALLEL_BYTES", 0)


@pytest.fixture
def train_pt(tmp_path: Path) -> Path:
    """A small training checkpoint saved by torch: model, optimizer state, plain values."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 48),
                                torch.nn.LayerNorm(48), torch.nn.Linear(48, 16))
    model[4].half()
    opt = torch.optim.Adam(model[:4].parameters())
    model[:4](torch.randn(2, 32)).sum().backward()
    opt.step()
    path = tmp_path / "train.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, path)
    return path


def _storage_bytes(obj: object) -> int:
    """Bytes of the distinct storages of every tensor in ``obj`` (what a torch file holds)."""
    seen: dict[int, int] = {}

    def walk(o: object) -> None:
        if isinstance(o, torch.Tensor):
            s = o.untyped_storage()
            seen[s.data_ptr() or id(s)] = s.nbytes()
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return sum(seen.values())


def _safetensors_bytes(files: list[Path]) -> int:
    from safetensors import safe_open

    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            total += sum(st.get_tensor(k).nbytes for k in st.keys())
    return total


def _dcp_bytes(folder: Path) -> int:
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = FileSystemReader(str(folder)).read_metadata()
    return sum(math.prod(m.size) * m.properties.dtype.itemsize
               for m in meta.state_dict_metadata.values() if isinstance(m, TensorStorageMetadata))


def _output_bytes(out: Path) -> int:
    if out.is_dir() and (out / ".metadata").exists():
        return _dcp_bytes(out)
    folder = out if out.is_dir() else out.parent
    shards = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
    if shards and shards[0].suffix == ".safetensors":
        return _safetensors_bytes(shards)
    return sum(_storage_bytes(torch.load(p, weights_only=True)) for p in shards)


CASES = [  # output name, --max-shard-size, what
    ("model.safetensors", None, "one safetensors file"),
    ("whole.pt", None, "one torch file, the whole checkpoint"),
    ("shards", 8000, "a safetensors shard set"),
    ("pytorch_model.bin", 8000, "a .bin shard set"),
    ("dcp", None, "a DCP folder"),
]


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize(("name", "shard", "what"), CASES, ids=[c[2] for c in CASES])
def test_convert_progress_adds_up_to_the_job(train_pt: Path, tmp_path: Path, name: str, shard: int | None,
                                             what: str, jobs: int) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / name
    tally = Tally()
    result = convert(train_pt, out, ConvertOptions(max_shard_size=shard, jobs=jobs), progress=tally)
    if shard:
        assert len(result.shards) > 2, what  # several units, so --jobs 2 really forks
    expected = 2 * _output_bytes(out)
    assert expected > 0
    assert tally.total == expected, what
    assert tally.done == expected, what


def test_extract_ema_and_remap_progress_add_up(tmp_path: Path) -> None:
    from ckpttool import open as open_checkpoint
    from ckpttool.ops.ema import extract_ema
    from ckpttool.ops.remap import RemapOptions, remap
    from tests.conftest import FIXTURES

    tally = Tally()
    out = tmp_path / "ema.safetensors"
    result = extract_ema(open_checkpoint(FIXTURES / "ema_pytorch.pt"), out, progress=tally)
    assert result.written
    saved = torch.load(FIXTURES / "ema_pytorch.pt", weights_only=True)
    ema = {k.removeprefix("ema_model."): v for k, v in saved["ema"].items() if k.startswith("ema_model.")}
    checked = sum(v.nbytes for k, v in ema.items()  # the EMA's floating tensors against the raw weights
                  if v.is_floating_point() and k in saved["model"] and saved["model"][k].shape == v.shape)
    assert checked > 0
    assert tally.total == tally.done == checked + 2 * _safetensors_bytes([out])

    tally = Tally()
    out = tmp_path / "remapped.pt"
    remap(FIXTURES / "model1_module_prefixed.pt", RemapOptions(presets=["wrappers"]), out, progress=tally)
    assert tally.total == tally.done == 2 * _storage_bytes(torch.load(out, weights_only=True))


@pytest.mark.parametrize("jobs", [1, 2])
def test_scan_progress_is_the_files_bytes(jobs: int) -> None:
    from ckpttool.ops.scan import scan_files
    from tests.conftest import FIXTURES

    files = sorted(FIXTURES.glob("*.pt"))
    tally = Tally()
    report = scan_files(files, jobs=jobs, progress=tally)
    assert len(report.files) == len(files)
    assert tally.total == tally.done == sum(p.stat().st_size for p in files)


def test_workers_progress_reaches_the_parent_before_their_unit_ends() -> None:
    """A worker blocks until the parent has seen its first chunk: only a per-chunk relay lets it go on."""
    seen = multiprocessing.get_context("fork").Event()

    class Sink(Tally):
        def advance(self, n: int) -> None:
            super().advance(n)
            seen.set()

    sink = Sink()
    relay = Relay(sink)

    def work(i: int) -> bool:
        relay.start(10)
        relay.advance(4)
        released = seen.wait(60)  # never set if the parent only heard of units once they end
        relay.advance(6)
        return released

    assert run_units(work, [1, 1], 2, relay) == [True, True]
    assert (sink.total, sink.done) == (20, 20)


@pytest.mark.parametrize("jobs", [1, 2])
def test_diff_progress_is_the_bytes_compared(tmp_path: Path, jobs: int) -> None:
    from ckpttool import open as open_checkpoint
    from ckpttool.ops.diff import diff_checkpoints

    torch.manual_seed(0)
    sd_a = {f"layer{i}.weight": torch.randn(64, 32 + i) for i in range(6)}
    sd_b = {k: v + 1e-3 for k, v in sd_a.items()}
    sd_b["layer5.weight"] = torch.randn(3, 3)  # a shape change: not compared
    sd_b["extra"] = torch.zeros(10)  # only in b: not compared
    torch.save(sd_a, tmp_path / "a.pt")
    torch.save(sd_b, tmp_path / "b.pt")
    expected = sum(v.nbytes for k, v in sd_a.items() if k in sd_b and sd_b[k].shape == v.shape)
    tally = Tally()
    diff_checkpoints(open_checkpoint(tmp_path / "a.pt"), open_checkpoint(tmp_path / "b.pt"), progress=tally,
                     jobs=jobs)
    assert tally.total == tally.done == expected


def test_validate_resume_fix_progress_adds_up(tmp_path: Path) -> None:
    from ckpttool import open as open_checkpoint
    from ckpttool.ops.resume import ResumeOptions, validate_resume
    from tests.resume.helpers import generic_checkpoint

    src = tmp_path / "last.pt"
    make = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=50)  # noqa: E731
    generic_checkpoint(src, make, done=6, steps=5, per_step=True)
    tally = Tally()
    out = tmp_path / "fixed.pt"
    validate_resume(open_checkpoint(src), ResumeOptions(epochs=14), fix_output=out, progress=tally)
    assert tally.total == tally.done == 2 * _storage_bytes(torch.load(out, weights_only=False)) > 0
