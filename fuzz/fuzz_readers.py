"""Coverage-guided fuzzing of ckpttool's readers with atheris (run by hand, not in CI).

    .venv/bin/python fuzz/make_seeds.py /tmp/ckpt-seeds          # once: real files + the hostile corpus
    .venv/bin/python fuzz/fuzz_readers.py --target=pickle /tmp/ckpt-seeds/pickle -max_total_time=300
    .venv/bin/python fuzz/fuzz_readers.py --target=zip /tmp/ckpt-seeds/zip -max_total_time=300

Targets: ``pickle`` (the VM on raw bytes), ``zip``, ``legacy``, ``safetensors``, ``any`` (whole
``ckpttool.open`` on a file, format sniffed). The property: only ``CkptError`` escapes (checked
below ``open()``'s safety net), no marker file appears (hostile seeds would create one in the
working directory), and each input finishes.
Findings and fixes are recorded in ``fuzz/README.md``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["ckpttool"]):
    from ckpttool.errors import CkptError
    from ckpttool.io import _checkpoint, read_tree
    from ckpttool.io.pickle.findings import pickle_findings
    from ckpttool.io.pickle.run import run_pickle
    from ckpttool.io.source import FileSource
    from ckpttool.layouts import recognise  # noqa: F401 - instrumented for open()

TARGET = "any"
for arg in list(sys.argv):
    if arg.startswith("--target="):
        TARGET = arg.split("=", 1)[1]
        sys.argv.remove(arg)

WORK = Path(tempfile.mkdtemp(prefix="ckpt-fuzz-"))
SCRATCH = WORK / {"safetensors": "x.safetensors", "pickle": "x.pkl"}.get(TARGET, "x.pt")
os.chdir(WORK)  # a payload that ran would leave PWNED-* here


def _check_markers() -> None:
    if any(WORK.glob("PWNED-*")):
        raise RuntimeError("a payload ran: marker file created")


def one_input(data: bytes) -> None:
    if TARGET == "pickle":
        try:
            load = run_pickle(data, "fuzz", None, keep_going=True)
            pickle_findings([load], load.value)
        except CkptError:
            pass
        _check_markers()
        return
    if TARGET == "legacy":
        from ckpttool.io.formats.torch_legacy import LEGACY_PREFIX

        data = LEGACY_PREFIX + data
    elif TARGET == "zip" and not data.startswith(b"PK"):
        return
    SCRATCH.write_bytes(data)
    try:
        # open()'s own steps, without its safety net that turns reader bugs into CkptError
        ckpt = _checkpoint(read_tree(SCRATCH))
        for section in ckpt.sections.values():
            if section.state_dict is not None:
                for ref in section.state_dict.values():
                    if ref.nbytes <= 1 << 16:
                        ref.read_bytes()
        read_tree(SCRATCH, keep_going=True)  # what scan does
    except CkptError:
        pass
    _check_markers()
    FileSource  # noqa: B018 - keep the import instrumented


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
