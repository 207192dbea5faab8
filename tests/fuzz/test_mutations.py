"""Hypothesis mutation tests: whatever the bytes, only ``CkptError`` escapes, and nothing runs.

Bounded (a few seconds, derandomised so CI is stable); the open-ended search is the atheris
harness in ``fuzz/``. Three generators: byte-level mutations of real files of every format and of
hostile files, opcode-level pickles from a vocabulary that mixes data, globals (dangerous ones
included), memo tricks and frames, and safetensors headers from JSON strategies.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckpttool
from ckpttool.errors import CkptError
from ckpttool.io import _checkpoint, read_tree
from ckpttool.io.pickle.findings import pickle_findings
from ckpttool.io.pickle.run import run_pickle
from ckpttool.jsonable import to_jsonable
from ckpttool.ops.scan import scan_file
from tests.hostile.hostile_corpus import CASES, build_corpus
from tests.malformed.malformed_files import small_archives

SETTINGS = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HOSTILE = ("os_system", "zip_payload_in_data_pkl", "legacy_payload_in_data_pickle", "build_setstate_namespace",
           "memo_overwrite", "torchscript_constants_pkl", "zip_local_name_mismatch")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("seeds")
    files = {k: p.read_bytes() for k, p in small_archives(folder / "small").items()}
    corpus = build_corpus(folder / "hostile", [c for c in CASES if c.name in HOSTILE])
    files.update({k: p.read_bytes() for k, p in corpus.items()})
    return files


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scratch")


def _mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, pos, blob in edits:
        pos %= max(len(out), 1)
        if kind == "flip" and out:
            out[pos] ^= blob[0] or 1
        elif kind == "set":
            out[pos:pos + len(blob)] = blob
        elif kind == "insert":
            out[pos:pos] = blob
        elif kind == "delete":
            del out[pos:pos + len(blob)]
        elif kind == "truncate":
            del out[pos:]
        elif kind == "duplicate":
            out[pos:pos] = out[pos:pos + 64 * len(blob)]
        elif kind == "int":  # a little-endian integer field set to an extreme
            out[pos:pos + 4] = struct.pack("<I", (0, 1, 0x7FFFFFFF, 0xFFFFFFFF)[blob[0] % 4])
    return bytes(out)


def _read_everything(path: Path) -> None:
    """What the commands do with a file: open, scan, a JSON rendering of the tree, a few tensor bytes.

    ``open()`` is taken apart (``read_tree`` + ``_checkpoint``) so that its safety net, which turns
    any reader bug into a ``CkptError``, cannot hide the bug from this test.
    """
    try:
        ckpt = _checkpoint(read_tree(path))
    except CkptError:
        pass
    else:
        to_jsonable(ckpt.tree)
        for section in ckpt.sections.values():
            if section.state_dict is not None:
                for ref in list(section.state_dict.values())[:4]:
                    if ref.nbytes <= 1 << 16:
                        try:
                            ref.read_bytes()
                        except CkptError:
                            pass
    for read in (lambda: read_tree(path, keep_going=True), lambda: ckpttool.open(path)):
        try:
            read()
        except CkptError:
            pass
    scan_file(path)


edits = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate", "int"]),
                           st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)), min_size=1, max_size=4)


@SETTINGS
@given(name=st.sampled_from(["zip", "legacy", "safetensors", "pickle", *HOSTILE]), changes=edits)
def test_mutated_files_only_raise_ckpt_errors(seeds: dict[str, bytes], scratch: Path, name: str,
                                             changes: list[tuple[str, int, bytes]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(scratch)
    path = scratch / "mutant.pt"
    path.write_bytes(_mutate(seeds[name], changes))
    _read_everything(path)
    assert not list(scratch.glob("PWNED-*"))


_FRAGMENTS = [
    b"(", b")", b"]", b"}", b"N", b"\x88", b"K\x01", b"J\xff\xff\xff\xff", b"\x8a\x09" + b"\xff" * 9, b"G" + bytes(8),
    b"\x85", b"\x86", b"\x87", b"t", b"l", b"d", b"a", b"e", b"s", b"u", b"b", b"R", b"\x81", b"\x92", b"o",
    b"q\x00", b"h\x00", b"q\x01", b"h\x01", b"r\x00\x00\x00\x00", b"j\x00\x00\x00\x00", b"\x94", b"2", b"0", b"1",
    b"\x8f", b"\x90", b"\x91", b"\x93", b"\x8c\x01a", b"\x8c\x0bcollections", b"\x8c\x0bOrderedDict",
    b"X\x02\x00\x00\x00os", b"\x8c\x06system", b"C\x02\x80\x02", b"\x95\x05\x00\x00\x00\x00\x00\x00\x00",
    b"ccollections\nOrderedDict\n", b"cbuiltins\nset\n", b"cbuiltins\ntuple\n", b"cbuiltins\nfrozenset\n",
    b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n", b"ctorch\nSize\n", b"c_codecs\nencode\n",
    b"cos\nsystem\n", b"cbuiltins\neval\n", b"cmodels\nNet\n", b"cargparse\nNamespace\n", b"\x82\x01", b"Q",
    b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ",
    b"ios\nsystem\n", b"I01\n", b"Vx\n", b"S'a'\n", b"F1.5\n", b"L5L\n", b"p3\n", b"g3\n",
]


@SETTINGS
@given(ops=st.lists(st.sampled_from(_FRAGMENTS), max_size=60), proto=st.sampled_from([b"", b"\x80\x02", b"\x80\x04"]))
def test_opcode_soup_only_raises_ckpt_errors(ops: list[bytes], proto: bytes) -> None:
    data = proto + b"".join(ops) + b"."
    load = run_pickle(data, "soup", None, keep_going=True)
    globals_, _ = pickle_findings([load], load.value)
    to_jsonable(load.value)
    named = {g.name for g in globals_ if g.kind == "dangerous"}
    if b"cos\nsystem\n" in data.split(b".")[0] and load.error is None:
        assert "os.system" in named


_ST_DTYPES = st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "Q7", ""])
_entry = st.fixed_dictionaries({"dtype": _ST_DTYPES,
                                "shape": st.lists(st.integers(-2, 6) | st.just(2**62), max_size=3),
                                "data_offsets": st.lists(st.integers(-1, 80), min_size=0, max_size=3)})
_header = st.dictionaries(st.text(max_size=4), _entry | st.integers() | st.none(), max_size=4)


@SETTINGS
@given(header=_header, data=st.binary(max_size=80), extra=st.sampled_from([b"", b" ", b"\x00"]))
def test_safetensors_headers_only_raise_ckpt_errors(scratch: Path, header: dict[str, object], data: bytes,
                                                   extra: bytes) -> None:
    text = json.dumps(header).encode() + extra
    path = scratch / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    try:
        ckpt = _checkpoint(read_tree(path))
    except CkptError:
        return
    # accepted: every tensor lies inside the data section and they tile it exactly
    spans = sorted((ref.storage.offset, ref.storage.nbytes) for ref in ckpt.tree.values())
    pos = 8 + len(text)
    for offset, nbytes in spans:
        assert offset == pos
        pos += nbytes
    assert pos == path.stat().st_size
