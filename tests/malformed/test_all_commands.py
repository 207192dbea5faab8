"""Every command, not just inspect and scan, fails cleanly on malformed and hostile input.

A sample of the traps, truncated archives and hostile files goes through diff, remap,
extract-ema, validate-resume and convert in one bounded child: each command exits 2 with one line
on stderr (or 0/1 where the file is readable and the command has something to say), never a
traceback, never past the timeout; no payload marker appears and nothing is written for a file
that could not be read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.hostile_corpus import CASES, build_corpus
from tests.malformed.bounded import ALL_COMMANDS, assert_clean_error, run_bounded
from tests.malformed.malformed_files import crafted, small_archives

_TRAPS = ("deep_tuple_as_dict_key", "memo_dag_tuple_as_dict_key", "memo_dag_lists_2_60", "cycle_dict",
          "zip_bomb_declared_1tb", "zip_view_past_storage_end", "zip_storage_numel_2_62", "legacy_storage_numel_2_62",
          "st_overlap", "st_header_declares_gigabytes", "int_of_1700_bytes_as_key", "st_shape_of_4000_digits",
          "random_bytes")
_HOSTILE = ("os_system", "zip_payload_in_data_pkl", "legacy_payload_in_data_pickle", "build_setstate_namespace",
            "zip_duplicate_evil_first", "frame_straddle")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bool]]:
    """name -> (path, whether ckpttool may read it)."""
    folder = tmp_path_factory.mktemp("all-commands")
    out: dict[str, tuple[Path, bool]] = {}
    for case in crafted():
        if case.name in _TRAPS:
            path = folder / f"{case.name}.pt"
            path.write_bytes(case.data)
            out[case.name] = (path, "ok" in case.expect)
    for kind, path in small_archives(folder / "small").items():
        data = path.read_bytes()
        cut = folder / f"truncated-{kind}{path.suffix}"
        cut.write_bytes(data[: len(data) * 2 // 3])
        out[f"truncated-{kind}"] = (cut, False)
    hostile = build_corpus(folder / "hostile", [c for c in CASES if c.name in _HOSTILE])
    readable = {c.name: c.readable for c in CASES}
    out.update({name: (path, readable[name]) for name, path in hostile.items()})
    return out


def test_every_command_fails_cleanly(inputs: dict[str, tuple[Path, bool]], monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [p for p, _ in inputs.values()]
    hostile_dir = paths[-1].parent
    monkeypatch.chdir(hostile_dir)
    results = run_bounded(paths, commands=("open", *ALL_COMMANDS), timeout=180)
    assert not list(hostile_dir.glob("PWNED-*")), "a payload ran"
    for name, (path, readable) in inputs.items():
        outcome = results[str(path)]
        assert_clean_error(outcome, allow_ok=readable)
        if outcome.open != "ok":
            for command in ("remap", "extract-ema", "convert"):
                assert outcome.commands[command]["code"] == 2, (name, command, outcome.commands[command])
