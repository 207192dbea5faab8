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
