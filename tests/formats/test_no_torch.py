"""inspect and scan of the new formats stay metadata-only: torch is never imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import FIXTURES

PROBE = ("import sys\nfrom ckpttool.cli import main\ncode = main(sys.argv[1:])\n"
         "print(code, 'torch' in sys.modules, file=sys.stderr)")


@pytest.mark.parametrize("target", ["bn_exported.pt2", "hf/diffusers_pipeline", "hf/peft_lora", "hf/peft_lora_bin",
                                    "hf/bin_shards"])
@pytest.mark.parametrize("command", ["inspect", "scan"])
def test_inspect_and_scan_do_not_import_torch(target, command):
    proc = subprocess.run([sys.executable, "-c", PROBE, command, str(FIXTURES / target)], capture_output=True,
                          text=True, timeout=120)
    code, torch_loaded = proc.stderr.strip().splitlines()[-1].split()
    assert torch_loaded == "False", proc.stderr
    assert code in ("0", "1")


COUNTING = ("import sys\nimport ckpttool.io.source as source\nread = [0]\norig = source.FileSource.read\n"
            "def counting(self, offset, length):\n    read[0] += length\n    return orig(self, offset, length)\n"
            "source.FileSource.read = counting\nfrom ckpttool.cli import main\ncode = main(sys.argv[1:])\n"
            "sys.stdout.flush()\nprint(code, read[0], 'torch' in sys.modules, file=sys.stderr)")


def test_inspect_of_an_export_archive_reads_its_index_not_its_weights(tmp_path):
    import torch

    model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(32)]).eval()  # 8 MiB
    path = tmp_path / "big.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 256),)), str(path))
    proc = subprocess.run([sys.executable, "-c", COUNTING, "inspect", str(path), "--json"], capture_output=True,
                          text=True, timeout=120)
    code, nbytes, torch_loaded = proc.stderr.strip().splitlines()[-1].split()
    assert (code, torch_loaded) == ("0", "False"), proc.stderr
    assert int(nbytes) < path.stat().st_size // 20
