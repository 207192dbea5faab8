"""The scan command's contract: a status per file, one stderr line per unread file, exit 0/1/2."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_cli
from tests.hostile.hostile_corpus import torch_zip

_ERROR_LINE = re.compile(r"^ckpttool: error\[[a-z-]+\]: (?P<path>.+?): .+$")
# what each fixture is; mmengine's message hub pickles bound methods, judged by the getattr rules
STATUS = {"malicious_reduce.pt": "dangerous", "model1_torchscript.pt": "code", "truncated.pt": "unreadable"}
_SKIP = {"mmengine_epoch_2.pth"}


def _scan(*paths: Path, cwd: Path | None = None) -> tuple[int, dict[str, dict], list[str]]:
    proc = run_cli("scan", "--json", *paths, cwd=cwd)
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["exit_code"] == proc.returncode
    return proc.returncode, {Path(f["path"]).name: f for f in report["files"]}, proc.stderr.splitlines()


@pytest.fixture
def suspicious(tmp_path: Path) -> Path:
    path = tmp_path / "looped.pt"
    path.write_bytes(torch_zip({"archive/data.pkl": b"\x80\x02]q\x00h\x00a."}))
    return path


def test_unreadable_files_exit_2_with_one_line_each(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    code, files, err = _scan(FIXTURES / "model1_state_dict.pt", FIXTURES / "truncated.pt", missing)
    assert code == 2
    assert [files[n]["status"] for n in ("model1_state_dict.pt", "truncated.pt", "missing.pt")] == \
        ["clean", "unreadable", "unreadable"]
    assert len(err) == 2, err
    assert [_ERROR_LINE.match(line)["path"] for line in err] == [str(FIXTURES / "truncated.pt"), str(missing)]
    assert files["truncated.pt"]["error"]["reference"] in err[0]


@pytest.mark.parametrize("other", ["malicious_reduce.pt", "model1_torchscript.pt", "suspicious"])
def test_a_failing_status_makes_it_1_and_unread_files_still_print(other: str, suspicious: Path) -> None:
    path = suspicious if other == "suspicious" else FIXTURES / other
    code, files, err = _scan(FIXTURES / "truncated.pt", path, cwd=suspicious.parent)
    assert code == 1
    assert files["truncated.pt"]["status"] == "unreadable"
    assert files[path.name]["status"] == {"malicious_reduce.pt": "dangerous", "model1_torchscript.pt": "code",
                                          "suspicious": "suspicious"}[other]
    assert len(err) == 1 and _ERROR_LINE.match(err[0])["path"] == str(FIXTURES / "truncated.pt")


def test_every_fixture_status() -> None:
    paths = [p for p in sorted(FIXTURES.iterdir())
             if p.is_file() and p.suffix in (".pt", ".pth", ".ckpt", ".tar", ".safetensors") and p.name not in _SKIP]
    assert len(paths) >= 25
    code, files, err = _scan(*paths)
    assert code == 1
    assert {name: f["status"] for name, f in files.items()} == {p.name: STATUS.get(p.name, "clean") for p in paths}
    assert len(err) == 1  # truncated.pt


def test_torchscript_is_code_with_its_files_listed_and_inspect_reads_its_tensors() -> None:
    import torch

    path = FIXTURES / "model1_torchscript.pt"
    with zipfile.ZipFile(path) as z:
        code_files = [n for n in z.namelist() if "/code/" in n and n.endswith(".py")]
    assert code_files
    code, files, err = _scan(path)
    assert code == 1 and err == []
    entry = files[path.name]
    assert entry["status"] == "code" and entry["dangerous"] == []
    assert sorted(entry["code_files"]) == sorted(code_files)
    assert any(f["code"] == "code.torchscript" for f in entry["findings"])
    human = run_cli("scan", path)
    assert human.returncode == 1 and "CODE" in human.stdout and code_files[0] in human.stdout
    proc = run_cli("inspect", path, "--json")
    assert proc.returncode == 0, proc.stderr
    ours = {k: v["shape"] for s in json.loads(proc.stdout)["sections"].values() for k, v in s["tensors"].items()}
    theirs = torch.jit.load(str(path), map_location="cpu").state_dict()
    assert ours == {k: list(v.shape) for k, v in theirs.items()}


def test_fresh_torchscript_archive_is_code(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())), str(path))
    code, files, _ = _scan(path)
    assert code == 1 and files["scripted.pt"]["status"] == "code"
    with zipfile.ZipFile(path) as z:
        assert sorted(files["scripted.pt"]["code_files"]) == sorted(
            n for n in z.namelist() if "/code/" in n and n.endswith(".py"))


def test_torch_export_archive_is_code(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "exported.pt2"
    program = torch.export.export(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()), (torch.randn(1, 3),))
    torch.export.save(program, str(path))
    code, files, _ = _scan(path)
    assert code == 1 and files["exported.pt2"]["status"] == "code"
    with zipfile.ZipFile(path) as z:
        graphs = [n for n in z.namelist() if "/models/" in n and n.endswith(".json")]
    assert graphs and files["exported.pt2"]["code_files"] == graphs


def test_human_output_names_status_and_trap(suspicious: Path) -> None:
    proc = run_cli("scan", suspicious)
    assert proc.returncode == 1 and proc.stderr == ""
    assert "SUSPICIOUS" in proc.stdout and "resource.self-containing" in proc.stdout
