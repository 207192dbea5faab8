"""DCP folders written by ckpttool (streaming), proven by torch's own ``dcp.load``."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ckpttool.cli import main
from ckpttool.errors import CkptError
from ckpttool.io.write import dcp as dcp_writer
from tests.conftest import ROOT


def _reference(path: Path) -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    model[2].weight.data = model[2].weight.data.to(torch.bfloat16).float()
    sd = {"model": model.state_dict(), "epoch": 7,
          "extra": {"ids": torch.arange(5), "half": torch.linspace(0, 1, 9, dtype=torch.float16)}}
    torch.save(sd, path)
    return sd


def _dcp_load(folder: Path, like: dict) -> dict:
    import torch.distributed.checkpoint as dcp

    target = {"model": {k: torch.zeros_like(v) for k, v in like["model"].items()}, "epoch": 0,
              "extra": {k: torch.zeros_like(v) for k, v in like["extra"].items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(target, checkpoint_id=folder, no_dist=True)
    return target


def test_file_to_dcp_loads_into_a_model(tmp_path: Path) -> None:
    ref = _reference(tmp_path / "ref.pt")
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(tmp_path / "out")]) == 0
    got = _dcp_load(tmp_path / "out", ref)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    model.load_state_dict(got["model"], strict=True)
    for k, v in ref["model"].items():
        assert torch.equal(got["model"][k], v)
    assert got["epoch"] == 7
    assert all(torch.equal(got["extra"][k], v) for k, v in ref["extra"].items())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".metadata", "__0_0.distcp"]
    assert not [p for p in tmp_path.iterdir() if "ckpttool" in p.name]


def test_views_and_shared_storages_are_written_compact(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {"t": base.t(), "row": base[1], "same": base}
    out = tmp_path / "v"
    dcp_writer.write_dcp_folder(state, out)
    target = {k: torch.zeros_like(v.contiguous()) for k, v in state.items()}
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(target, checkpoint_id=out, no_dist=True)
    assert all(torch.equal(target[k], v) for k, v in state.items())
    assert (out / "__0_0.distcp").stat().st_size < 3 * base.nbytes + 6000


@pytest.mark.parametrize("files", [1, 3])
def test_the_same_tree_gives_the_same_bytes(tmp_path: Path, files: int) -> None:
    ref = _reference(tmp_path / "ref.pt")
    a, b = tmp_path / "a", tmp_path / "b"
    dcp_writer.write_dcp_folder(ref, a, files=files)
    dcp_writer.write_dcp_folder(ref, b, files=files)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and len(names) == files + 1
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    got = _dcp_load(a, ref)
    assert all(torch.equal(got["model"][k], v) for k, v in ref["model"].items())


def test_a_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _reference(tmp_path / "ref.pt")
    real = dcp_writer.write_metadata

    def broken(*args: object) -> None:
        real(*args)
        raise OSError("disk full")

    monkeypatch.setattr(dcp_writer, "write_metadata", broken)
    with pytest.raises(OSError):
        dcp_writer.write_dcp_folder(ref, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.pt"]


def test_an_existing_output_is_refused_without_force(tmp_path: Path) -> None:
    ref = _reference(tmp_path / "ref.pt")
    (tmp_path / "out").mkdir()
    with pytest.raises(CkptError, match="exists"):
        dcp_writer.write_dcp_folder(ref, tmp_path / "out")
    dcp_writer.write_dcp_folder(ref, tmp_path / "out", force=True)
    assert (tmp_path / "out" / ".metadata").is_file()


def test_two_ranks_load_it_into_sharded_tensors(tmp_path: Path) -> None:
    _reference(tmp_path / "ref.pt")
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(tmp_path / "out")]) == 0
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("load_sharded.py")), str(tmp_path / "out"),
                           str(tmp_path / "ref.pt")], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]


def test_dcp_written_by_ranks_converts_back_to_dcp(dcp_folders: dict[str, Path], tmp_path: Path) -> None:
    from tests.dcp.test_commands import _full_state

    src = dcp_folders["mesh2d"]
    assert main(["convert", str(src), "-o", str(tmp_path / "again")]) == 0
    want = _full_state(src)
    got = _full_state(tmp_path / "again")
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_remap_rewrites_only_the_metadata(dcp_folders: dict[str, Path], tmp_path: Path) -> None:
    from ckpttool.io.formats.dcp_metadata import TensorEntry, read_metadata
    from tests.dcp.test_commands import _full_state

    src = dcp_folders["shard0"]
    out = tmp_path / "renamed"
    assert main(["remap", str(src), "-o", str(out), "--map", "emb=embed"]) == 0
    want = _full_state(src)
    got = _full_state(out)
    assert "model.embed.weight" in got and "model.emb.weight" not in got
    for k, v in want.items():
        assert torch.equal(got[k.replace("model.emb.", "model.embed.")], v)
    for name in ("__0_0.distcp", "__1_0.distcp"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    old, new = read_metadata(src), read_metadata(out)
    a, b = old.entries["model.emb.weight"], new.entries["model.embed.weight"]
    assert isinstance(a, TensorEntry) and isinstance(b, TensorEntry) and len(b.chunks) == len(a.chunks) == 2
    import torch.distributed.checkpoint as dcp

    state: dict = {"epoch": None, "args": {"lr": None, "name": None}}
    dcp.load(state, checkpoint_id=out, no_dist=True)
    assert state == {"epoch": 3, "args": {"lr": 0.5, "name": "run"}}


def test_remap_to_a_folder_reports_no_blank_digest(tmp_path: Path) -> None:
    """A DCP folder has no single sha256: the report says how it was verified instead of an empty digest."""
    from tests.conftest import run_cli

    _reference(tmp_path / "ref.pt")
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(tmp_path / "src")]) == 0
    proc = run_cli("remap", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "--add-prefix", "x")
    assert proc.returncode == 0, proc.stderr
    wrote = next(line for line in proc.stdout.splitlines() if line.startswith("wrote"))
    assert "sha256" not in wrote and "verified" in wrote


def test_a_pickled_object_is_refused_as_output_and_nothing_is_left(tmp_path: Path) -> None:
    """A DCP folder keeps plain data only: a pickled model is refused as the output's limit, naming the way out."""
    from tests.conftest import FIXTURES, run_cli

    out = tmp_path / "m.dcp"
    proc = run_cli("convert", FIXTURES / "model1_train.pt", "-o", out)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "error[output-refused]" in proc.stderr and "DCP folder" in proc.stderr and "--sanitize" in proc.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
    assert main(["convert", str(FIXTURES / "model1_train.pt"), "-o", str(out), "--sanitize"]) == 0


def test_force_never_replaces_a_folder_of_other_files(tmp_path: Path) -> None:
    """--force replaces an earlier DCP output; a folder of unrelated files is refused and left as it was."""
    _reference(tmp_path / "ref.pt")
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "notes.txt").write_text("keep")
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(other), "--force"]) == 2
    assert (other / "sub" / "notes.txt").read_text() == "keep"
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(out)]) == 0
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(out), "--force"]) == 0
    assert (out / ".metadata").is_file()


def test_remap_force_replaces_its_earlier_folder(tmp_path: Path) -> None:
    """remap writes DCP folders, so --force replaces an earlier one; other paths stay one-line refusals."""
    from tests.conftest import run_cli

    _reference(tmp_path / "ref.pt")
    assert main(["convert", str(tmp_path / "ref.pt"), "-o", str(tmp_path / "src")]) == 0
    out = tmp_path / "out"
    assert main(["remap", str(tmp_path / "src"), "-o", str(out), "--add-prefix", "x"]) == 0
    proc = run_cli("remap", tmp_path / "src", "-o", out, "--add-prefix", "y")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--force" in proc.stderr
    assert main(["remap", str(tmp_path / "src"), "-o", str(out), "--add-prefix", "y", "--force"]) == 0
    assert "model.y.0.weight" in _full_state_keys(out)
    proc = run_cli("remap", tmp_path / "ref.pt", "-o", out, "--add-prefix", "y", "--force")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "directory" in proc.stderr


def _full_state_keys(folder: Path) -> list[str]:
    from ckpttool.io.formats.dcp_metadata import read_metadata

    return list(read_metadata(folder).entries)


def test_writing_a_folder_imports_no_torch(tmp_path: Path) -> None:
    _reference(tmp_path / "ref.pt")
    code = ("import sys; from ckpttool.ops.convert import convert; convert(sys.argv[1], sys.argv[2]); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ref.pt"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _dcp_load(tmp_path / "out", torch.load(tmp_path / "ref.pt", weights_only=True))["epoch"] == 7
