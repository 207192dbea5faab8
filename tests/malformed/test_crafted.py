"""Hand-built traps: resource bombs, bad zips, bad safetensors headers, bad legacy streams.

All of them are read in one child process with a timeout and a 512 MiB address-space cap: each must
give its expected error reference (or, for legitimate-but-nasty shapes such as cycles and memo
DAGs, read fine), within the time and memory, with one line on stderr and no traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.malformed.bounded import assert_clean_error, run_bounded
from tests.malformed.malformed_files import Crafted, crafted

CASES = crafted()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("crafted")
    paths = []
    for case in CASES:
        path = folder / f"{case.name}.bin"
        path.write_bytes(case.data)
        paths.append(path)
    results = run_bounded(paths, timeout=120, memory=512 << 20)  # the interpreter alone takes ~200 MiB of it
    return {case.name: results[str(path)] for case, path in zip(CASES, paths)}


def test_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_crafted_input(case: Crafted, outcomes: dict[str, object]) -> None:
    outcome = outcomes[case.name]
    assert outcome.open in case.expect, f"{case.name}: got {outcome.open}, expected one of {case.expect}"
    assert_clean_error(outcome, allow_ok="ok" in case.expect)


def test_crafted_files_are_small() -> None:
    """The cap on memory is proportional to the file: the bombs are tiny files (the zip bomb aside)."""
    sizes = {c.name: len(c.data) for c in CASES}
    assert max(v for k, v in sizes.items() if k != "zip_bomb_real_1000_to_1") < 3_000_000


def test_text_opcodes_are_linear(tmp_path: Path) -> None:
    """250 000 protocol-0 INT opcodes (1 MB): each must not copy a 64 KB window (that took 6 s)."""
    path = tmp_path / "text_ops.pkl"
    path.write_bytes(b"\x80\x02N" + b"I1\n0" * 250_000 + b".")
    outcome = run_bounded([path], commands=("open",), timeout=15)[str(path)]
    assert outcome.open == "ok"
