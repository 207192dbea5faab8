"""Builders for malformed and resource-bomb inputs, each at most about 1 MB (most a few hundred bytes).

``small_archives`` makes real files with torch and safetensors (the things truncation and bit
flips start from); ``crafted`` makes hand-built traps, each with the outcome it must have.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.hostile.hostile_corpus import legacy_parts, torch_zip


def small_archives(folder: Path) -> dict[str, Path]:
    """A torch zip, a legacy stream, a safetensors file and a plain pickle, all tiny."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = {"w": base, "view": base[1:, 1:3], "b": torch.ones(2, dtype=torch.float16)}
    out = {"zip": folder / "small.pt", "legacy": folder / "small_legacy.pt",
           "safetensors": folder / "small.safetensors", "pickle": folder / "small.pkl"}
    torch.save(sd, out["zip"])
    torch.save(sd, out["legacy"], _use_new_zipfile_serialization=False)
    save_file({"w": base.contiguous(), "b": torch.ones(2, dtype=torch.float16)}, str(out["safetensors"]))
    out["pickle"].write_bytes(pickle.dumps({"epoch": 3, "lr": [0.1, 0.01], "name": "run"}, protocol=4))
    return out


def zip_boundaries(data: bytes) -> list[int]:
    """Offsets where a zip structure starts or ends: local headers, data, central entries, EOCD."""
    cuts = {0, len(data)}
    z = zipfile.ZipFile(io.BytesIO(data))
    for info in z.infolist():
        start = info.header_offset
        nlen, xlen = struct.unpack("<HH", data[start + 26:start + 30])
        body = start + 30 + nlen + xlen
        cuts |= {start, start + 30, body, body + info.compress_size}
    pos = data.rfind(b"PK\x05\x06")
    cdir = struct.unpack("<I", data[pos + 16:pos + 20])[0]
    while data[cdir:cdir + 4] == b"PK\x01\x02":
        cuts.add(cdir)
        nlen, xlen, clen = struct.unpack("<HHH", data[cdir + 28:cdir + 34])
        cdir += 46 + nlen + xlen + clen
    cuts |= {cdir, pos, pos + 22}
    return sorted(c for c in cuts if 0 <= c <= len(data))


@dataclass
class Crafted:
    """A trap, and what reading it must give: an error reference, or (``ok``) success."""

    name: str
    data: bytes
    expect: tuple[str, ...]  # acceptable outcomes: error references, or "ok"


def _int_bytes(n: int) -> bytes:
    """LONG4 of ``n`` bytes: 1700 is the most ckpttool accepts (str() refuses past ~4300 digits)."""
    return b"\x8b" + struct.pack("<i", n) + b"\x01" * n


def _pkl(body: bytes, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + body + b"."


def _u(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _safetensors(header: object, data: bytes = b"", *, raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _tensor_pickle(numel: int, offset: int = 0, size: tuple[int, ...] = (4,),
                   stride: tuple[int, ...] = (1,), storage: str = "FloatStorage") -> bytes:
    """{'w': _rebuild_tensor_v2(storage '0' of ``numel`` elements, offset, size, stride)}."""
    ints = b"".join(b"J" + struct.pack("<i", v) for v in size)
    strides = b"".join(b"J" + struct.pack("<i", v) for v in stride)
    pid = b"(" + _u("storage") + b"ctorch\n" + storage.encode() + b"\n" + _u("0") + _u("cpu") + \
        b"\x8a\x08" + struct.pack("<q", numel) + b"tQ"
    call = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"J" + struct.pack("<i", offset) + b"(" + ints
            + b"t(" + strides + b"t\x89ccollections\nOrderedDict\n)RtR")
    return _pkl(b"}" + _u("w") + call + b"s")


def _deflated_zip(name: str, payload: bytes, declared: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, payload)
    data = bytearray(buf.getvalue())
    if declared is not None:  # patch the uncompressed size in the local header and central entry
        data[22:26] = struct.pack("<I", declared)
        cdir = data.rfind(b"PK\x01\x02")
        data[cdir + 24:cdir + 28] = struct.pack("<I", declared)
    return bytes(data)


def _dag(kind: str, levels: int = 60) -> bytes:
    make = {"list": (b"]", lambda p: b"(" + p + p + b"l"), "tuple": (b")", lambda p: p + p + b"\x86"),
            "dict": (b"}", lambda p: b"}(" + _u("a") + p + _u("b") + p + b"u")}[kind]
    body = make[0] + b"q\x00"
    for i in range(1, levels + 1):
        body += make[1](b"h" + bytes([i - 1])) + b"q" + bytes([i])
    return body


def crafted() -> list[Crafted]:
    corrupt = ("corrupt-pickle", "truncated-file", "unreadable-checkpoint")
    limit = ("resource-limit",)
    n = 20_000
    zeros = bytes(20 << 20)
    w = struct.pack("<4f", 1, 2, 3, 4)
    st_ok = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    return [
        # ---- pickle resource bombs ----------------------------------------------------------------
        Crafted("deep_list", _pkl(b"]" * n + b"a" * (n - 1)), ("ok", *limit)),
        Crafted("deep_dict", _pkl(b"}" + (_u("k") + b"}") * n + b"s" * n), ("ok", *limit)),
        Crafted("deep_tuple_as_dict_key", _pkl(b"})" + b"\x85" * 1_000_000 + b"Ns"), limit),
        Crafted("deep_tuple_in_set", _pkl(b"\x8f(" + b")" + b"\x85" * 1_000_000 + b"\x90", 4), limit),
        Crafted("deep_tuple_by_builtins_tuple",
                _pkl(b")q\x010cbuiltins\ntuple\nq\x020" + b"h\x02(]h\x01atRq\x010" * 2000 + b"}h\x01Ns"), limit),
        Crafted("deep_stub_state", _pkl(b"cm\nM\nq\x000" + b"h\x00)R" * n + b"b" * (n - 1)), ("ok", *limit)),
        Crafted("memo_dag_lists_2_60", _pkl(_dag("list")), ("ok",)),
        Crafted("memo_dag_dicts_2_60", _pkl(_dag("dict")), ("ok",)),
        Crafted("memo_dag_tuples_2_60", _pkl(_dag("tuple")), ("ok",)),
        Crafted("memo_dag_tuple_as_dict_key", _pkl(_dag("tuple") + b"0}h\x3cNs"), limit),
        Crafted("memo_dag_tuples_in_builtins_set",
                _pkl(_dag("tuple", 40) + b"0cbuiltins\nset\n(]" + b"(" + b"h\x28" * 1000 + b"etR"), limit),
        Crafted("cycle_list", _pkl(b"]q\x00h\x00a"), ("ok",)),
        Crafted("cycle_dict", _pkl(b"}q\x00" + _u("self") + b"h\x00s"), ("ok",)),
        Crafted("cycle_stub_state", _pkl(b"cmodels\nNet\n)Rq\x00}" + _u("me") + b"h\x00sb"), ("ok",)),
        Crafted("many_marks", _pkl(b"(" * 300_000 + b"N"), ("ok", *corrupt)),
        Crafted("int_of_65536_bytes", _pkl(b"}" + _u("epoch") + _int_bytes(65536) + b"s"), limit),
        Crafted("int_of_1701_bytes", _pkl(b"}" + _u("epoch") + _int_bytes(1701) + b"s"), limit),
        Crafted("int_of_1700_bytes_as_value", _pkl(b"}" + _u("epoch") + _int_bytes(1700) + b"s"), ("ok",)),
        Crafted("int_of_1700_bytes_as_key", _pkl(b"}" + _int_bytes(1700) + b"Ns"), ("ok",)),
        Crafted("st_shape_of_4000_digits", _safetensors(None, w, raw=b'{"w": {"dtype": "F32", "shape": ['
                                                         + b"9" * 4000 + b', 2], "data_offsets": [0, 16]}}'),
                corrupt),
        Crafted("nan_and_inf_values", pickle.dumps({"epoch": float("nan"), "lr": float("-inf")}, 2), ("ok",)),
        Crafted("long4_huge", _pkl(b"\x8b" + struct.pack("<i", 2**31 - 1)), limit + corrupt),
        Crafted("binbytes8_huge", _pkl(b"\x8e" + struct.pack("<Q", 2**63), 4), corrupt),
        Crafted("binunicode8_huge", _pkl(b"\x8d" + struct.pack("<Q", 2**64 - 1), 4), corrupt),
        Crafted("frame_huge", b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.", corrupt),
        Crafted("memo_get_missing", _pkl(b"h\x07"), corrupt),
        Crafted("protocol_6", b"\x80\x06N.", corrupt),
        Crafted("unknown_opcode", _pkl(b"\xff"), corrupt),
        Crafted("stop_on_empty_stack", b"\x80\x02.", corrupt),
        Crafted("no_stop", b"\x80\x02N", corrupt),
        Crafted("persistent_id_in_plain_pickle", _pkl(_u("x") + b"Q"), corrupt),
        Crafted("dict_odd_items", _pkl(b"(" + _u("k") + b"d"), corrupt),
        Crafted("unhashable_key", _pkl(b"}]Ns"), corrupt),
        Crafted("setitem_on_int", _pkl(b"K\x01" + _u("k") + b"Ns"), corrupt),
        Crafted("bad_int_literal", b"I12x\n.", corrupt),
        Crafted("bad_float_literal", b"Fnanx\n.", corrupt),
        # ---- torch zip ----------------------------------------------------------------------------
        Crafted("zip_bomb_declared_1tb", _deflated_zip("archive/data.pkl", b"\x80\x02N.", declared=2**32 - 2),
                limit + corrupt),
        Crafted("zip_bomb_real_1000_to_1", _deflated_zip("archive/data.pkl", zeros), limit + corrupt),
        Crafted("zip_inflates_past_declared", _deflated_zip("archive/data.pkl", b"\x80\x02N." + bytes(5000),
                                                            declared=4), limit + corrupt),
        Crafted("zip_unknown_compression", _method(torch_zip({}), 12), corrupt),
        Crafted("zip_empty", b"PK\x05\x06" + bytes(18), corrupt),
        Crafted("zip_no_data_pkl", _plain_zip({"archive/version": b"3"}), corrupt),
        Crafted("zip_no_root_folder", _plain_zip({"data.pkl": pickle.dumps({}, 2)}), corrupt),
        Crafted("zip_central_dir_past_end", _patch_eocd(torch_zip({}), dir_offset=2**31), corrupt),
        Crafted("zip_many_entries_declared", _patch_eocd(torch_zip({}), count=65000), corrupt + limit),
        Crafted("zip64_without_locator", _patch_eocd(torch_zip({}), count=0xFFFF), corrupt),
        Crafted("zip_storage_numel_2_62", torch_zip({"archive/data.pkl": _tensor_pickle(2**62),
                                                     "archive/data/0": w}), limit),
        Crafted("zip_storage_bigger_than_record", torch_zip({"archive/data.pkl": _tensor_pickle(8),
                                                             "archive/data/0": w}), corrupt),
        Crafted("zip_storage_record_missing", torch_zip({"archive/data.pkl": _tensor_pickle(4)}), corrupt),
        Crafted("zip_view_past_storage_end", torch_zip({"archive/data.pkl": _tensor_pickle(4, offset=2),
                                                        "archive/data/0": w}), corrupt),
        Crafted("zip_stride_past_storage_end", torch_zip({"archive/data.pkl": _tensor_pickle(4, stride=(2,)),
                                                          "archive/data/0": w}), corrupt),
        Crafted("zip_negative_stride", torch_zip({"archive/data.pkl": _tensor_pickle(4, stride=(-1,)),
                                                  "archive/data/0": w}), corrupt),
        Crafted("zip_negative_offset", torch_zip({"archive/data.pkl": _tensor_pickle(4, offset=-1),
                                                  "archive/data/0": w}), corrupt),
        Crafted("zip_negative_size", torch_zip({"archive/data.pkl": _tensor_pickle(4, size=(-4,)),
                                                "archive/data/0": w}), corrupt),
        Crafted("zip_huge_shape_zero_stride", torch_zip({"archive/data.pkl": _tensor_pickle(
            4, size=(2**31 - 1, 2**31 - 1), stride=(0, 0)), "archive/data/0": w}), ("ok", *corrupt)),
        Crafted("zip_unknown_storage_type", torch_zip({"archive/data.pkl": _tensor_pickle(4, storage="EvilStorage"),
                                                       "archive/data/0": w}), corrupt),
        Crafted("zip_extra_member_starting_like_a_pickle",
                torch_zip({"archive/extra/blob.bin": b"\x80\x02\xff not a pickle"}), ("ok",)),
        Crafted("zip_valid_tensor", torch_zip({"archive/data.pkl": _tensor_pickle(4), "archive/data/0": w}),
                ("ok",)),
        # ---- legacy stream ------------------------------------------------------------------------
        Crafted("legacy_storage_numel_2_62", _legacy_with_storage(2**62), limit),
        Crafted("legacy_storage_missing_bytes", _legacy_with_storage(4, body=w[:8]), corrupt),
        Crafted("legacy_size_header_disagrees", _legacy_with_storage(4, header=3), corrupt),
        Crafted("legacy_undeclared_key", b"".join(legacy_parts()[:4]) + pickle.dumps(["9"], 2), corrupt),
        Crafted("legacy_only_magic", pickle.dumps(0x1950A86A20F9469CFC6C, 2), corrupt),
        # ---- safetensors --------------------------------------------------------------------------
        Crafted("st_header_longer_than_file", struct.pack("<Q", 500) + b'{"a":1}', corrupt),
        Crafted("st_header_declares_gigabytes", struct.pack("<Q", 2**40) + b"{" + bytes(100), corrupt + limit),
        Crafted("st_header_over_100mb_in_file", struct.pack("<Q", 100_000_001) + b"{", corrupt + limit),
        Crafted("st_invalid_json", _safetensors(None, raw=b"{not json"), corrupt),
        Crafted("st_invalid_utf8", _safetensors(None, raw=b'{"\xff": 1}'), corrupt),
        Crafted("st_nan_token", _safetensors(None, raw=b'{"__metadata__": {"a": NaN}}'), corrupt),
        Crafted("st_duplicate_keys", _safetensors(None, w, raw=b'{"w": {"dtype": "F32", "shape": [4], '
                                                  b'"data_offsets": [0, 16]}, "w": {"dtype": "F32", '
                                                  b'"shape": [4], "data_offsets": [0, 16]}}'), corrupt),
        Crafted("st_header_not_object", _safetensors([1, 2]), corrupt),
        Crafted("st_deeply_nested_json", _safetensors(None, raw=b"{" + b'"a":' + b"[" * 100_000 + b"]" * 100_000
                                                      + b"}"), corrupt),
        Crafted("st_offsets_past_end", _safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 32]}},
                                                    w), corrupt),
        Crafted("st_offsets_reversed", _safetensors({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}},
                                                    w), corrupt),
        Crafted("st_overlap", _safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, w),
                corrupt),
        Crafted("st_gap", _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, w), corrupt),
        Crafted("st_trailing_bytes", _safetensors(st_ok, w + b"junk"), corrupt),
        Crafted("st_negative_shape", _safetensors({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
                                                  w), corrupt),
        Crafted("st_huge_shape", _safetensors({"w": {"dtype": "F32", "shape": [2**62, 2**62],
                                                     "data_offsets": [0, 16]}}, w), corrupt),
        Crafted("st_float_shape", _safetensors({"w": {"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]}},
                                               w), corrupt),
        Crafted("st_bool_shape", _safetensors({"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}},
                                              w[:4]), corrupt),
        Crafted("st_shape_dtype_mismatch", _safetensors({"w": {"dtype": "F16", "shape": [4],
                                                               "data_offsets": [0, 16]}}, w), corrupt),
        Crafted("st_unknown_dtype", _safetensors({"w": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 16]}}, w),
                corrupt),
        Crafted("st_missing_offsets", _safetensors({"w": {"dtype": "F32", "shape": [4]}}, w), corrupt),
        Crafted("st_extra_field", _safetensors({"w": {**st_ok["w"], "evil": 1}}, w), corrupt),
        Crafted("st_metadata_not_strings", _safetensors({"__metadata__": {"a": 1}, **st_ok}, w), corrupt),
        Crafted("st_valid", _safetensors(st_ok, w), ("ok",)),
        # ---- not checkpoints at all ------------------------------------------------------------------
        Crafted("random_bytes", os.urandom(4096), corrupt),
        Crafted("one_byte", b"\x80", corrupt),
        Crafted("text_file", b"hello, this is not a checkpoint\n" * 10, corrupt),
    ]


def _plain_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _method(data: bytes, method: int) -> bytes:
    """Claim ``method`` for data.pkl in both headers (the bytes stay stored)."""
    out = bytearray(data)
    out[8:10] = struct.pack("<H", method)
    cdir = out.find(b"PK\x01\x02")
    out[cdir + 10:cdir + 12] = struct.pack("<H", method)
    return bytes(out)


def _patch_eocd(data: bytes, *, count: int | None = None, dir_offset: int | None = None) -> bytes:
    out = bytearray(data)
    pos = out.rfind(b"PK\x05\x06")
    if count is not None:
        out[pos + 8:pos + 12] = struct.pack("<HH", count, count)
    if dir_offset is not None:
        out[pos + 16:pos + 20] = struct.pack("<I", dir_offset)
    return bytes(out)


def _legacy_with_storage(numel: int, *, header: int | None = None, body: bytes | None = None) -> bytes:
    """A legacy stream whose data pickle declares one FloatStorage of ``numel`` elements."""
    pid = (b"(" + _u("storage") + b"ctorch\nFloatStorage\n" + _u("0") + _u("cpu") + b"\x8a\x08"
           + struct.pack("<q", numel) + b"Nt")
    data = _pkl(b"}" + _u("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"QK\x00(K\x04t(K\x01t\x89"
                + b"ccollections\nOrderedDict\n)RtRs")
    parts = legacy_parts()
    parts[3] = data
    parts[4] = pickle.dumps(["0"], 2)
    raw = struct.pack("<q", numel if header is None else header)
    return b"".join(parts) + raw + (body if body is not None else struct.pack("<4f", 1, 2, 3, 4))
