"""What a zip archive's directory alone tells a scan: code torch would compile, records that inflate hugely.

Read from the central directory (no member data): a TorchScript archive (``code/`` members or a
``constants.pkl``, the test ``torch.load`` itself uses to hand a file to ``torch.jit.load``) carries
Python-like code that loading compiles and runs, a torch.export archive (``archive_format`` and
``models/*.json``) a serialized graph that ``torch.export.load`` rebuilds into a runnable program;
a deflated record whose declared size is far beyond the size of the whole file is a zip bomb for
any reader that inflates it in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ckpttool.errors import CkptError
from ckpttool.io.formats.zip_index import ZipIndex, read_zip_index
from ckpttool.model import Finding

__all__ = ["ArchiveFacts", "archive_facts", "INFLATION_RATIO", "INFLATION_MIN"]

# A compressed record inflating past this many times the whole file (and past INFLATION_MIN bytes)
# is a bomb: torch never compresses, and honest compressed data rarely gains 10x.
INFLATION_RATIO = 100
INFLATION_MIN = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class ArchiveFacts:
    code_files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def archive_facts(path: Path, index: ZipIndex | None = None) -> ArchiveFacts:
    """Code members and zip-bomb findings of the archive at ``path`` (nothing for other files).

    ``index`` is the directory the reader already parsed; without it (the reader failed) the
    directory is read here, if the file is a zip at all.
    """
    facts = ArchiveFacts()
    try:
        if index is None:
            with open(path, "rb") as fh:
                if fh.read(4) != _ZIP_MAGIC:
                    return facts
            index = read_zip_index(path)
        size = path.stat().st_size
    except (OSError, CkptError):  # the reader reports what is wrong with the file
        return facts
    roots = {name.split("/", 1)[0] for name in index.entries if "/" in name}
    scripted = {r for r in roots if f"{r}/constants.pkl" in index.entries
                or any(n.startswith(f"{r}/code/") for n in index.entries)}
    facts.code_files = [n for n in index.entries if n.split("/", 1)[0] in scripted
                        and n.startswith(f"{n.split('/', 1)[0]}/code/") and n.endswith(".py")]
    if scripted and not facts.code_files:  # constants.pkl alone sends torch.load to torch.jit.load
        facts.code_files = [f"{r}/constants.pkl" for r in sorted(scripted)]
    # torch.export archives (.pt2): serialized graphs that torch.export.load rebuilds into runnable code
    exported = {r for r in roots if f"{r}/archive_format" in index.entries}
    facts.code_files += [n for n in index.entries if n.split("/", 1)[0] in exported
                         and n.startswith(f"{n.split('/', 1)[0]}/models/") and n.endswith(".json")]
    for name, entry in index.entries.items():
        if entry.method != 0 and entry.size > max(INFLATION_MIN, INFLATION_RATIO * size):
            facts.findings.append(Finding(
                "resource.zip-bomb", "error",
                f"zip member {name!r} inflates from {entry.compressed_size:,} to {entry.size:,} bytes "
                f"({entry.size / max(size, 1):,.0f} times the whole file)", where=name,
                hint="torch never compresses records; a reader that inflates it in memory runs out"))
    if facts.code_files:
        facts.findings.append(Finding(
            "code.torchscript" if scripted else "code.export", "error",
            f"a TorchScript or torch.export archive: torch.jit.load / torch.export.load build and run its code "
            f"({len(facts.code_files)} file(s): {', '.join(facts.code_files[:5])}"
            + (" …" if len(facts.code_files) > 5 else "") + ")",
            hint="load only the tensors (ckpttool inspect/convert read them without the code)"))
    return facts
