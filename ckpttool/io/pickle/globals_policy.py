"""Which globals a pickle may name, and what each becomes. Policy first, as torch's unpickler does.

Three classes of global:

- ``data``: an exact ``module.qualname`` on the allow-list; the unpickler re-implements it as pure
  code that builds inert values (``collections.OrderedDict``, torch's tensor-rebuild helpers...).
- ``dangerous``: a global that could run code, import, touch files or the network if it were
  called (``os.system``, ``builtins.eval``, ``subprocess.*``...). It is never called; the object it
  would have built becomes a ``Stub`` and the checkpoint carries an ``unsafe.global`` finding.
- ``stub``: anything else (``models.yolo.Model``); it becomes a ``Stub`` that records its state.

Names are matched whole: ``STACK_GLOBAL('pathlib', 'os.system')`` is classed by every dotted part,
so an attribute walk through an innocent module to a dangerous one is still dangerous; so is any
dotted name that walks through a module attribute (``argparse._os...``), and any global of the
standard library that is not on the allow-list (its private helpers run programs).
"""

from __future__ import annotations

import sys
from typing import Literal

from ckpttool.dtypes import DTYPES
from ckpttool.io.pickle.benign_globals import BENIGN_DATA_GLOBALS, BENIGN_STAND_INS

__all__ = ["GlobalKind", "classify", "DATA_GLOBALS", "TENSOR_TYPE_GLOBALS"]

GlobalKind = Literal["data", "stub", "dangerous"]

_TORCH_DTYPE_NAMES = {d.name for d in DTYPES} | {
    "float", "double", "half", "long", "int", "short", "cfloat", "cdouble", "chalf", "uint1",
    "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
}
_STORAGE_CLASSES = {d.storage_class for d in DTYPES if d.storage_class} | {"UntypedStorage"}

# The classes and constants torch and torchao pickle for quantized, sparse and nested tensors,
# DTensors and torchao's quantized weights: plain data, rebuilt by ``composite`` as tensors.
TENSOR_TYPE_GLOBALS: frozenset[str] = frozenset(
    {
        "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_nested_tensor", "torch._utils._rebuild_wrapper_subclass",
        "torch.Tensor", "torch.per_tensor_affine", "torch.per_channel_affine",
        "torch.per_tensor_symmetric", "torch.per_channel_symmetric",
        "torch.per_channel_affine_float_qparams", "torch.sparse_csr", "torch.sparse_csc",
        "torch.sparse_bsr", "torch.sparse_bsc", "torch.jagged",
        "torch.nested._internal.nested_tensor.NestedTensor",
        "torch.nested._internal.nested_tensor._rebuild_njt", "torch._dynamo.decorators._DimRange",
        "torch.distributed.tensor.DTensor", "torch.distributed.tensor._api.DTensor",
        "torch.distributed._tensor.api.DTensor",
        "torch.distributed.tensor._dtensor_spec.DTensorSpec",
        "torch.distributed.tensor._dtensor_spec.TensorMeta",
        "torch.distributed.tensor._dtensor_spec.ShardOrderEntry",
        "torch.distributed.tensor.placement_types.Shard",
        "torch.distributed.tensor.placement_types.Replicate",
        "torch.distributed.tensor.placement_types.Partial",
        "torch.distributed.tensor.placement_types._StridedShard",
        "torch.distributed.device_mesh.DeviceMesh",
        "torch.distributed._mesh_layout._MeshLayout", "torch.distributed._mesh_layout._FlatLayout",
        "torchao.quantization.Int8Tensor", "torchao.quantization.Float8Tensor",
        "torchao.quantization.IntxUnpackedToInt8Tensor", "torchao.quantization.Int4Tensor",
        "torchao.quantization.granularity.PerRow", "torchao.quantization.granularity.PerTensor",
        "torchao.quantization.granularity.PerGroup", "torchao.quantization.granularity.PerAxis",
        "torchao.quantization.quant_primitives.MappingType",
        "torchao.quantization.quantize_.common.kernel_preference.KernelPreference",
        "torchao.quantization.quantize_.workflows.int8.int8_tensor.QuantizeTensorToInt8Kwargs",
    }
)

# Exact names whose effect the unpickler re-implements as pure code, or that are plain values.
DATA_GLOBALS: frozenset[str] = frozenset(
    {
        "collections.OrderedDict", "collections.defaultdict", "collections.Counter",
        "collections.deque",
        "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.complex",
        "builtins.list", "builtins.dict", "builtins.tuple", "builtins.int", "builtins.float",
        "builtins.str", "builtins.bytes", "builtins.bool", "builtins.object", "builtins.slice",
        "builtins.range", "builtins.Ellipsis", "builtins.NotImplemented", "re._compile",
        "logging.getLogger",
        "__builtin__.set", "__builtin__.frozenset", "__builtin__.bytearray", "__builtin__.complex",
        "__builtin__.object", "__builtin__.list", "__builtin__.dict", "__builtin__.tuple",
        "_codecs.encode",
        "copyreg._reconstructor", "copy_reg._reconstructor", "copyreg.__newobj__",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type",
        "torch.Size", "torch.device", "torch.serialization._get_layout",
        "torch.storage.UntypedStorage", "torch.storage._TypedStorage",
        "torch.strided", "torch.sparse_coo", "torch.nn.parameter.Parameter",
        "torch.torch_version.TorchVersion",
        "numpy.dtype", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.ndarray", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32",
        "numpy.dtypes.Float64DType", "numpy.dtypes.Float32DType", "numpy.dtypes.Int64DType",
        "numpy.dtypes.Int32DType", "numpy.dtypes.Float16DType", "numpy.dtypes.BoolDType",
        "argparse.Namespace", "types.SimpleNamespace",
        "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
        "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta",
        "datetime.timezone", "decimal.Decimal", "uuid.UUID", "fractions.Fraction",
        "enum.Enum",
        "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_tensorlist",
        "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_boollist",
        "torch.jit._pickle.build_tensor_from_id", "torch.jit._pickle.restore_type_tag",
        # the data classes torch.distributed.checkpoint writes into .metadata (dataclasses, an enum)
        "torch.distributed.checkpoint.metadata.Metadata",
        "torch.distributed.checkpoint.metadata.TensorStorageMetadata",
        "torch.distributed.checkpoint.metadata.BytesStorageMetadata",
        "torch.distributed.checkpoint.metadata.TensorProperties",
        "torch.distributed.checkpoint.metadata.ChunkStorageMetadata",
        "torch.distributed.checkpoint.metadata.MetadataIndex",
        "torch.distributed.checkpoint.metadata.StorageMeta",
        "torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING",
        "torch.distributed.checkpoint.filesystem._StorageInfo",
        # DeepSpeed ZeRO optimizer files: plain records (loss-scaler settings, the stage enum, the
        # address of a parameter's slice in a flat partition), read as stand-ins holding their state
        "deepspeed.runtime.fp16.loss_scaler.LossScaler",
        "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
        "deepspeed.runtime.zero.config.ZeroStageEnum",
        "deepspeed.utils.tensor_fragment.fragment_address",
    }
    | TENSOR_TYPE_GLOBALS
    | {f"torch.{name}" for name in _TORCH_DTYPE_NAMES}
    | {f"torch.{name}" for name in _STORAGE_CLASSES}
    | {f"torch.cuda.{name}" for name in _STORAGE_CLASSES}
    | BENIGN_DATA_GLOBALS
)

# Whole modules that can run code, spawn processes, import, or reach files and the network.
_DANGEROUS_MODULES: frozenset[str] = frozenset(
    {
        "os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "runpy", "importlib",
        "imp", "zipimport", "pkgutil", "pickle", "_pickle", "cPickle", "marshal", "shelve",
        "dill", "cloudpickle", "joblib", "shutil", "socket", "_socket", "ssl", "select",
        "code", "codeop", "ctypes", "_ctypes", "cffi", "pty", "tty", "pdb", "bdb",
        "webbrowser", "urllib", "urllib2", "urllib3", "http", "httplib", "requests", "ftplib",
        "telnetlib", "smtplib", "poplib", "imaplib", "xmlrpc", "asyncio", "multiprocessing",
        "concurrent", "threading", "_thread", "signal", "platform", "commands", "popen2", "pip",
        "setuptools", "distutils", "pkg_resources", "site", "ensurepip", "venv", "types",
        "operator", "_operator", "functools", "_functools", "itertools", "inspect", "gc",
        "tempfile", "io", "_io", "glob", "fileinput", "tarfile", "zipfile", "sqlite3", "mmap",
        "resource", "_winapi", "msvcrt", "winreg", "_winreg", "nturl2path", "timeit",
        "trace", "profile", "cProfile", "doctest", "unittest", "builtins_exec",
        "IPython", "pydoc", "sysconfig", "atexit", "weakref", "ast", "dis",
        "compileall", "py_compile", "pathlib_os", "fcntl", "termios", "syslog", "sched",
        "socketserver", "wsgiref", "xml", "email", "mailbox", "smtpd",
    }
)

_DANGEROUS_BUILTINS: frozenset[str] = frozenset(
    {
        "eval", "exec", "execfile", "compile", "open", "file", "__import__", "getattr",
        "setattr", "delattr", "globals", "locals", "vars", "input", "raw_input", "breakpoint",
        "exit", "quit", "help", "reload", "apply", "memoryview", "type", "super", "classmethod",
        "staticmethod", "property", "dir", "print", "iter", "next", "map", "filter", "reduce",
        "callable", "hasattr", "__build_class__", "__loader__", "__spec__",
    }
)

# Attribute names that turn a dotted walk from any module into a call of code.
_WALK_NAMES: frozenset[str] = frozenset(
    {
        "eval", "exec", "execfile", "compile", "open", "__import__", "getattr", "setattr",
        "delattr", "globals", "locals", "vars", "breakpoint", "system", "popen", "spawnv",
        "spawnl", "execv", "execl", "__globals__", "__builtins__", "__subclasses__",
        "__reduce__", "__reduce_ex__", "__code__", "__class__", "__dict__", "__getattribute__",
        # the rest of os's process family and the loaders, reachable through any module's alias
        "execvp", "execvpe", "execve", "execle", "execlp", "execlpe", "spawnve", "spawnvp",
        "spawnvpe", "spawnle", "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp", "startfile",
        "fork", "forkpty", "kill", "killpg", "putenv", "unlink", "remove", "rmdir", "rmtree",
        "Popen", "check_output", "check_call", "getoutput", "getstatusoutput", "run_path",
        "run_module", "import_module", "load", "loads",
    }
)

# Python 2 and oddly named stdlib modules that ``sys.stdlib_module_names`` does not list.
_EXTRA_STDLIB: frozenset[str] = frozenset(
    {"__builtin__", "copy_reg", "cPickle", "commands", "popen2", "httplib", "urllib2",
     "idlelib", "lib2to3", "_osx_support", "_aix_support", "_pyrepl", "ensurepip"}
)
_STDLIB: frozenset[str] = frozenset(getattr(sys, "stdlib_module_names", ())) | _EXTRA_STDLIB

# Dotted prefixes inside otherwise-innocent packages that load, compile or execute.
_DANGEROUS_PREFIXES: tuple[str, ...] = (
    "torch.load", "torch.hub", "torch.jit", "torch.fx", "torch.package", "torch._C",
    "torch.ops", "torch._ops", "torch._dynamo", "torch._inductor", "torch.utils.cpp_extension",
    "torch.storage._load_from_bytes", "torch.serialization", "torch._utils",
    "torch.distributed", "torch.multiprocessing", "torch.backends", "torch.compile",
    "torch.classes", "torch._classes", "torch.library", "torch.cuda.memory",
    "numpy.load", "numpy.loads", "numpy.save", "numpy.fromfile", "numpy.tofile",
    "numpy.lib.npyio", "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing",
    "numpy.lib.format", "numpy.memmap", "scipy.io", "pandas.read_pickle", "pandas.io",
    "yaml.load", "yaml.unsafe_load", "yaml.full_load", "logging.config", "test.support",
)


def _walks_through_attribute(name: str) -> bool:
    """A dotted name whose inner parts are not classes: a walk through module attributes.

    ``STACK_GLOBAL('argparse', '_os.execvp')`` reaches ``os`` through argparse's private alias;
    a nested class (``Outer.Inner``) has capitalised inner parts and stays a stub.
    """
    inner = name.split(".")[:-1]
    return any(not part[:1].isupper() for part in inner)


def _parts(fullname: str) -> list[str]:
    return [p for p in fullname.replace(":", ".").split(".") if p]


def classify(module: str, name: str) -> GlobalKind:
    """Class the global ``module.name`` as ``data``, ``stub`` or ``dangerous``."""
    fullname = f"{module}.{name}"
    if fullname in DATA_GLOBALS:
        return "data"
    if fullname in BENIGN_STAND_INS:
        return "stub"
    parts = _parts(fullname)
    # The module a pickle imports by its root name, and any part of the attribute walk after it:
    # ``mmcv.fileio.io`` is mmcv's own submodule, but ``('pathlib', 'os.system')`` walks into os.
    if (parts and parts[0] in _DANGEROUS_MODULES) or any(p in _DANGEROUS_MODULES for p in _parts(name)):
        return "dangerous"
    if module == "__main__":
        # torch.save(model) from a script pickles __main__.Net: a class like any other, unless the
        # name reaches a builtin or os helper the running script happens to hold.
        walk = set(_parts(name))
        return "dangerous" if walk & (_DANGEROUS_BUILTINS | _WALK_NAMES) or len(walk) > 1 else "stub"
    if module in ("builtins", "__builtin__", "__builtins__") or "__builtins__" in parts:
        return "dangerous" if name in _DANGEROUS_BUILTINS or "." in name else "stub"
    if any(part in _WALK_NAMES for part in parts[1:]):
        return "dangerous"
    if _walks_through_attribute(name):
        return "dangerous"
    if parts and parts[0] in _STDLIB:
        # Nothing in the standard library outside the allow-list belongs in a checkpoint, and its
        # private helpers (uuid._get_command_stdout, _osx_support._read_output...) run programs:
        # a deny-list of them is always one advisory behind.
        return "dangerous"
    if fullname.startswith(("torch._utils._rebuild_", "torch._tensor._rebuild_")):
        return "data"  # every rebuild function has a pure stand-in (an opaque tensor if unknown)
    for prefix in _DANGEROUS_PREFIXES:
        if fullname == prefix or fullname.startswith(prefix + "."):
            return "dangerous"
    return "stub"
