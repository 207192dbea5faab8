"""Write fuzzing seeds: small real checkpoints of every format plus the hostile corpus.

    .venv/bin/python fuzz/make_seeds.py /tmp/ckpt-seeds
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile.hostile_corpus import build_corpus  # noqa: E402
from tests.malformed.malformed_files import crafted, small_archives  # noqa: E402


def main(out: Path) -> None:
    folders = {k: out / k for k in ("pickle", "zip", "legacy", "safetensors", "any")}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    files = list(small_archives(out / "_small").values()) + list(build_corpus(out / "_hostile").values())
    for case in crafted():
        if len(case.data) < 200_000:
            path = out / "_crafted" / f"{case.name}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(case.data)
            files.append(path)
    for path in files:
        data = path.read_bytes()
        kind = ("zip" if data.startswith(b"PK") else "legacy" if data.startswith(b"\x80\x02\x8a\x0al\xfc")
                else "safetensors" if data[8:9] == b"{" else "pickle")
        shutil.copy(path, folders[kind] / path.name)
        shutil.copy(path, folders["any"] / path.name)
        if kind == "legacy":
            (folders["legacy"] / path.name).write_bytes(data[15:])  # the harness adds the magic pickle back
    print(f"{len(files)} seeds in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ckpt-seeds"))
