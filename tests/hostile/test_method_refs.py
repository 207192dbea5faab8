"""``builtins.getattr`` in a pickle: a stored method reference is a stand-in; every other use stays dangerous.

mmengine pickles ``getattr(HistoryBuffer, 'mean')``: loading only looks a method up. The same global
on a dangerous target, with a dunder name, with a default, or whose result a later REDUCE calls, is
the usual first step of a payload. Each case is checked through ``scan`` (the verdict), the reader
(what the stand-in is) and a rewrite (refused by name unless it is a method reference). The live
cases are also run through ``pickle.loads`` in a child process, which shows what the load does.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ckpttool.errors import OutputRefused, UnsafeContent
from ckpttool.io import open_checkpoint
from ckpttool.io.pickle.run import run_pickle
from ckpttool.io.write.checkpoint import write_checkpoint
from ckpttool.model import GlobalRef, Stub
from ckpttool.ops.scan import scan_file
from tests.conftest import FIXTURES
from tests.hostile.hostile_corpus import call, glob, pkl, sglob, torch_zip, tup, uni

GETATTR = glob("__builtin__", "getattr")  # as protocol 2 writes it (mmengine's files)
BUFFER = glob("mmengine.logging.history_buffer", "HistoryBuffer")


def _ref(target: bytes, name: str) -> bytes:
    return call(GETATTR, target, uni(name))


def _dict(**values: bytes) -> bytes:
    return b"}(" + b"".join(uni(k) + v for k, v in values.items()) + b"u"


BENIGN = {
    "one-method": _dict(mean=_ref(BUFFER, "mean")),
    "several-methods-shared-getattr": b"}(" + uni("min") + GETATTR + b"q\x01" + tup(BUFFER, uni("min")) + b"R"
    + uni("max") + b"h\x01" + tup(BUFFER, uni("max")) + b"Ru",
    "private-name": _dict(f=_ref(BUFFER, "_reduce")),
    "stack-global": _dict(mean=sglob("builtins", "getattr") + tup(sglob("mypkg.stats", "Meter"), uni("avg")) + b"R"),
}

DANGEROUS = {
    "dangerous-module-target": _dict(f=_ref(glob("subprocess", "Popen"), "wait")),
    "builtin-target": _dict(f=_ref(glob("builtins", "eval"), "x")),
    "dunder-name": _dict(f=_ref(BUFFER, "__init__")),
    "globals-walk": _dict(f=_ref(BUFFER, "__globals__")),
    "with-default": _dict(f=call(GETATTR, BUFFER, uni("mean"), b"N")),
    "name-not-a-string": _dict(f=call(GETATTR, BUFFER, b"K\x01")),
    "target-an-instance": _dict(f=_ref(BUFFER + b")\x81", "mean")),
    "result-called": _dict(f=call(_ref(BUFFER, "mean"), uni("x"))),
    "result-called-later-through-memo": b"}(" + uni("m") + _ref(BUFFER, "mean") + b"q\x05" + uni("r")
    + b"h\x05" + tup(uni("x")) + b"Ru",
    "getattr-stored-bare": _dict(m=_ref(BUFFER, "mean"), g=GETATTR),
    "one-benign-one-dunder": _dict(m=_ref(BUFFER, "mean"), c=_ref(BUFFER, "__class__")),
    "called-then-dropped": _dict(m=_ref(BUFFER, "mean")) + _ref(BUFFER, "mean") + tup(uni("x")) + b"R0",
    "called-by-torch-rebuild-helper": _dict(t=call(glob("torch._tensor", "_rebuild_from_type_v2"),
                                                   _ref(BUFFER, "mean"), glob("torch", "Tensor"), tup(), b"N")),
}


def _file(tmp_path: Path, name: str, body: bytes) -> Path:
    path = tmp_path / f"{name}.pt"
    path.write_bytes(torch_zip({"archive/data.pkl": pkl(body)}))
    return path


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_a_stored_method_reference_is_a_stand_in(tmp_path: Path, name: str) -> None:
    path = _file(tmp_path, name, BENIGN[name])
    result = scan_file(path)
    assert result.error is None and result.dangerous == []
    ckpt = open_checkpoint(path)
    assert "pickle.method-reference" in {f.code for f in ckpt.findings}
    refs = [v for v in ckpt.tree.values() if isinstance(v, Stub)]
    assert refs and all(r.qualname == "builtins.getattr" and not r.dangerous for r in refs)
    assert all(isinstance(r.args[0], GlobalRef) and isinstance(r.args[1], str) for r in refs)
    out = tmp_path / "copy.pt"
    write_checkpoint(ckpt.tree, out)  # written back as the same getattr call
    again = run_pickle(_data_pkl(out), "data.pkl")
    assert again.method_refs and all(k != "dangerous" for k in again.kinds.values())


@pytest.mark.parametrize("name", sorted(DANGEROUS))
def test_every_other_getattr_stays_dangerous_and_is_never_written(tmp_path: Path, name: str) -> None:
    path = _file(tmp_path, name, DANGEROUS[name])
    result = scan_file(path)
    assert result.error is None
    assert result.dangerous, f"{name} was called clean"
    ckpt = open_checkpoint(path)
    assert "unsafe.global" in {f.code for f in ckpt.findings}
    # a subclass rebuild is refused as an entry the writers cannot reproduce, before its callable is reached
    refusal = (UnsafeContent, OutputRefused) if name == "called-by-torch-rebuild-helper" else UnsafeContent
    with pytest.raises(refusal):
        write_checkpoint(ckpt.tree, tmp_path / "copy.pt")
    assert not (tmp_path / "copy.pt").exists()


def test_the_mmengine_checkpoint_scans_clean_with_its_method_references_named() -> None:
    result = scan_file(FIXTURES / "mmengine_epoch_2.pth")
    assert result.dangerous == [] and result.status == "clean"
    ckpt = open_checkpoint(FIXTURES / "mmengine_epoch_2.pth")
    finding = next(f for f in ckpt.findings if f.code == "pickle.method-reference")
    assert finding.severity == "info" and "HistoryBuffer.mean" in finding.message


_LOADS = r"""
import pickle, sys, types
import torch
mod = types.ModuleType("mmengine.logging.history_buffer")
class HistoryBuffer:
    calls = []
    @classmethod
    def mean(cls, *a):
        cls.calls.append(a)
        return 0.0
mod.HistoryBuffer = HistoryBuffer
HistoryBuffer.__module__ = mod.__name__
for name in ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer"):
    sys.modules[name] = mod
try:
    pickle.loads(sys.stdin.buffer.read())
except Exception:  # the helper fails on what the call returned, after calling it
    pass
print(len(HistoryBuffer.calls))
"""


@pytest.mark.parametrize(("name", "calls"), [("one-method", 0), ("result-called", 1),
                                              ("result-called-later-through-memo", 1), ("called-then-dropped", 1),
                                              ("called-by-torch-rebuild-helper", 1)])
def test_what_the_load_does_is_what_the_verdict_says(name: str, calls: int) -> None:
    body = BENIGN.get(name) or DANGEROUS[name]
    run = subprocess.run([sys.executable, "-c", _LOADS], input=pkl(body), capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert int(run.stdout) == calls  # a method reference is looked up, not called; the others run it


def _data_pkl(path: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


def test_the_assembler_builds_what_pickle_reads() -> None:
    value = pickle.loads(pkl(_dict(a=uni("x"))))
    assert value == {"a": "x"}

