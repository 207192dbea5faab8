"""Every prefix of a small archive is refused; every byte flip is refused or read, never a crash.

Archives are real torch/safetensors output. Prefixes cut at each structure boundary also go
through the CLI (exit 2, one line, no traceback); the other prefixes and the flips go through
``ckpttool.open`` only, all in one bounded child process per family.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.malformed.bounded import assert_clean_error, run_bounded
from tests.malformed.malformed_files import small_archives, zip_boundaries


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return small_archives(tmp_path_factory.mktemp("small"))


def _boundaries(kind: str, data: bytes) -> list[int]:
    if kind == "zip":
        return zip_boundaries(data)
    if kind == "safetensors":
        n = int.from_bytes(data[:8], "little")
        return [0, 1, 7, 8, 9, 8 + n - 1, 8 + n, 8 + n + 1, len(data) - 1]
    if kind == "legacy":  # the five pickle ends and each storage's size header
        import pickletools

        cuts, pos = [0], 0
        for _ in range(5):
            *_, last = pickletools.genops(data[pos:])
            pos += last[2] + 1
            cuts += [pos - 1, pos, pos + 1]
        return [*cuts, pos + 8, len(data) - 1]
    return [0, 1, 2, len(data) // 2, len(data) - 1]


def test_archives_are_readable(archives: dict[str, Path]) -> None:
    import ckpttool

    for path in archives.values():
        assert ckpttool.open(path).tree


def test_every_prefix_is_an_error(archives: dict[str, Path], tmp_path: Path) -> None:
    paths = []
    for kind, path in archives.items():
        data = path.read_bytes()
        for k in range(1, len(data)):
            cut = tmp_path / f"{kind}-{k}.bin"
            cut.write_bytes(data[:k])
            paths.append(cut)
    results = run_bounded(paths, commands=("open",), timeout=120)
    accepted = [p for p, o in results.items() if o.open == "ok"]
    assert not accepted, accepted[:5]
    for outcome in results.values():
        assert_clean_error(outcome)


def test_prefixes_at_structure_boundaries_fail_cleanly_in_the_cli(archives: dict[str, Path], tmp_path: Path) -> None:
    paths = []
    for kind, path in archives.items():
        data = path.read_bytes()
        for k in sorted(set(_boundaries(kind, data))):
            if 0 <= k < len(data):
                cut = tmp_path / f"{kind}-{k}.pt"
                cut.write_bytes(data[:k])
                paths.append(cut)
    assert len(paths) > 30
    results = run_bounded(paths, commands=("open", "inspect", "scan"), timeout=120)
    for outcome in results.values():
        assert_clean_error(outcome)


def test_byte_and_bit_flips_never_escape(archives: dict[str, Path], tmp_path: Path) -> None:
    rng = random.Random(8)
    paths = []
    for kind, path in archives.items():
        data = path.read_bytes()
        positions = range(len(data)) if len(data) <= 2500 else rng.sample(range(len(data)), 2500)
        for i in positions:
            flipped = bytearray(data)
            flipped[i] ^= 0xFF
            out = tmp_path / f"{kind}-byte{i}.bin"
            out.write_bytes(bytes(flipped))
            paths.append(out)
        for j in range(100):
            flipped = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            out = tmp_path / f"{kind}-bits{j}.bin"
            out.write_bytes(bytes(flipped))
            paths.append(out)
    results = run_bounded(paths, commands=("open",), timeout=180)
    for outcome in results.values():
        assert_clean_error(outcome, allow_ok=True)
    # a sample through the CLI too
    sample = rng.sample(paths, 60)
    for outcome in run_bounded(sample, commands=("open", "inspect", "scan"), timeout=120).values():
        assert_clean_error(outcome, allow_ok=True)
