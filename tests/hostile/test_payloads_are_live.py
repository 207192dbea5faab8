"""The corpus is real: the loaders ckpttool replaces do run these payloads.

A child process, with its working directory in a copy of the corpus, runs ``pickle.loads`` or
``torch.load(weights_only=False)`` on every ``live`` case; each must leave its marker. This is
what the hostile tests prove ckpttool does not do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.hostile.hostile_corpus import CASES, marker

_ORACLE = r"""
import os, pickle, sys, time, warnings
sys.path.insert(0, os.getcwd())
warnings.simplefilter("ignore")
import torch
from tests.hostile.hostile_corpus import CASES, build_corpus, marker
from pathlib import Path
folder = Path(os.getcwd())
files = build_corpus(folder)
for case in CASES:
    if not case.live:
        continue
    try:
        if case.live == "pickle":
            pickle.loads(files[case.name].read_bytes())
        else:
            torch.load(files[case.name], weights_only=False)
    except BaseException:
        pass
for _ in range(100):  # Popen-style payloads finish in the background
    if all(marker(folder, c.name).exists() for c in CASES if c.live):
        break
    time.sleep(0.02)
"""


def test_live_payloads_run_under_pickle_and_torch_load(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _ORACLE], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    dead = [c.name for c in CASES if c.live and not marker(tmp_path, c.name).exists()]
    assert not dead, f"these payloads did not run under the real loader: {dead}"
    assert sum(1 for c in CASES if c.live) >= 30
