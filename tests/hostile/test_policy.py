"""The classification policy on its own, and no false alarms on the real checkpoints in fixtures/."""

from __future__ import annotations

import pytest

from ckpttool.io.pickle.globals_policy import classify
from ckpttool.ops.scan import scan_file
from tests.conftest import FIXTURES

CASES = [
    ("collections", "OrderedDict", "data"), ("torch._utils", "_rebuild_tensor_v2", "data"),
    ("torch", "FloatStorage", "data"), ("re", "_compile", "data"), ("argparse", "Namespace", "data"),
    ("torch.distributed.checkpoint.metadata", "Metadata", "data"),
    ("models.yolo", "Model", "stub"), ("torch.nn.modules.conv", "Conv2d", "stub"),
    ("ultralytics.nn.tasks", "DetectionModel", "stub"), ("mypkg.configs", "Outer.Inner", "stub"),
    ("builtins", "ValueError", "stub"), ("torch._utils", "_rebuild_device_tensor_from_numpy", "data"),
    ("os", "system", "dangerous"), ("posix", "system", "dangerous"), ("nt", "system", "dangerous"),
    ("builtins", "eval", "dangerous"), ("builtins", "getattr", "dangerous"), ("__builtin__", "exec", "dangerous"),
    ("subprocess", "Popen", "dangerous"), ("runpy", "run_path", "dangerous"), ("pip", "main", "dangerous"),
    ("pathlib", "os.system", "dangerous"), ("argparse", "_os.execvp", "dangerous"),
    ("torch", "serialization.os.system", "dangerous"), ("collections", "_sys.modules", "dangerous"),
    ("uuid", "_get_command_stdout", "dangerous"), ("_osx_support", "_read_output", "dangerous"),
    ("idlelib.pyshell", "ModifiedInterpreter.runcode", "dangerous"), ("lib2to3.pgen2.grammar", "Grammar",
                                                                        "dangerous"),
    ("test.support.script_helper", "assert_python_ok", "dangerous"), ("ensurepip", "_run_pip", "dangerous"),
    ("asyncio.unix_events", "_UnixSubprocessTransport", "dangerous"), ("logging.config", "listen", "dangerous"),
    ("torch", "load", "dangerous"), ("torch._utils", "_import_dotted_name", "dangerous"),
    ("torch.storage", "_load_from_bytes", "dangerous"), ("torch.hub", "load", "dangerous"),
    ("numpy", "load", "dangerous"), ("numpy.testing._private.utils", "runstring", "dangerous"),
    ("some.vendored", "execvp", "dangerous"), ("mylib", "spawnlp", "dangerous"),
]


@pytest.mark.parametrize(("module", "name", "kind"), CASES, ids=lambda v: str(v))
def test_classify(module: str, name: str, kind: str) -> None:
    assert classify(module, name) == kind


# Real checkpoints whose callable globals are genuine: mmengine pickles bound methods as getattr.
_KNOWN = {"malicious_reduce.pt": {"posix.system"}}
_SKIP = {".py", ".json", ".md", ".txt", ".toml", ".log", ".yaml"}


def test_no_false_alarms_on_real_checkpoints() -> None:
    entries = [p for p in sorted(FIXTURES.iterdir()) if p.suffix not in _SKIP and not p.name.startswith("_")]
    gpu = FIXTURES / "gpu"
    if gpu.is_dir():
        entries += [p for p in sorted(gpu.iterdir()) if p.suffix not in _SKIP]
    scanned = 0
    for path in entries:
        if path.is_dir() and path.name in ("gpu", "__pycache__"):
            continue
        result = scan_file(path)
        scanned += result.error is None
        assert set(result.dangerous) == _KNOWN.get(path.name, set()), (path.name, result.dangerous)
    assert scanned >= 25
