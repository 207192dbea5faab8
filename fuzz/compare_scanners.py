"""Run ckpttool, picklescan, fickling and modelscan over the hostile corpus; print a markdown table.

    .venv/bin/python fuzz/compare_scanners.py [--modelscan /path/to/venv/bin/modelscan] [OUT.md]

picklescan and fickling are dev tools in the project venv; modelscan pins numpy 1.x and older
rich, so it lives in its own venv (``python -m venv /tmp/scanvenv && /tmp/scanvenv/bin/pip install
modelscan``) and is run as a command. Every scanner runs with its working directory in the corpus
folder; the script checks afterwards that no payload marker appeared (none of them executes the
files, but that is checked, not assumed).

Verdicts: ``flagged`` (the scanner reported a dangerous import), ``refused`` (it could not read the
file and said so: exit 2 / an error, never "clean"), ``MISSED`` (it called a live payload clean,
or only reported an error it does not treat as a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile.hostile_corpus import CASES, build_corpus  # noqa: E402

# Clean fixtures, to count false alarms: a zip state_dict, a training file with pickled modules,
# a legacy file, a TorchScript archive, safetensors.
CLEAN = ("model1_state_dict.pt", "model1_train.pt", "model1_state_dict_legacy.pt", "model1_torchscript.pt",
         "model1_state_dict.safetensors", "lightning.ckpt")


def _ckpttool(path: Path) -> str:
    from ckpttool.ops.scan import scan_file

    result = scan_file(path)
    if result.dangerous:
        return "flagged: " + ", ".join(result.dangerous[:3])
    return f"refused ({result.error.reference})" if result.error else "MISSED"


def _picklescan(path: Path) -> str:
    try:
        from picklescan.scanner import SafetyLevel, scan_file_path
    except ImportError:
        return "n/a"
    try:
        result = scan_file_path(str(path))
    except Exception as exc:  # noqa: BLE001 - a crash of the scanner is a verdict too
        return f"crashed ({type(exc).__name__})"
    bad = [f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous]
    if bad or result.issues_count:
        return "flagged: " + ", ".join(bad[:3])
    if result.scan_err:
        return "error (exit 2)"
    return "MISSED"


def _fickling(path: Path) -> str:
    try:
        import fickling
    except ImportError:
        return "n/a"
    try:
        result = fickling.scan_file(str(path), graceful=True)
    except Exception as exc:  # noqa: BLE001
        return f"crashed ({type(exc).__name__})"
    if not result.is_safe:
        return f"flagged ({result.severity.name})"
    return "error" if result.errors else "MISSED"


def _modelscan(exe: str | None, folder: Path, files: dict[str, Path]) -> dict[str, str]:
    if not exe or not Path(exe).exists():
        return {name: "n/a" for name in files}
    out: dict[str, str] = {}
    for name, path in files.items():  # one run per file: its report names sources inconsistently
        report = folder / f"_modelscan_{name}.json"
        subprocess.run([exe, "-p", str(path), "-r", "json", "-o", str(report)], cwd=folder, capture_output=True,
                       timeout=300)
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError):
            out[name] = "crashed"
            continue
        finally:
            report.unlink(missing_ok=True)
        issues = data.get("issues") or []
        errors = data.get("errors") or []
        skipped = (data.get("summary") or {}).get("skipped", {}).get("total_skipped", 0)
        if issues:
            ops = sorted({f"{i.get('module')}.{i.get('operator')}" for i in issues})
            out[name] = "flagged: " + ", ".join(ops[:3])
        elif errors:
            out[name] = "error"
        else:
            out[name] = "MISSED (skipped)" if skipped else "MISSED"
    return out


def _header(modelscan: str | None) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    ms = "not installed"
    if modelscan and Path(modelscan).exists():
        ms = subprocess.run([modelscan, "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    return [f"# ckpttool vs picklescan {ver('picklescan')}, fickling {ver('fickling')}, modelscan {ms}", "",
            "Made by `fuzz/compare_scanners.py`. MISSED: the scanner called a hostile file clean; refused: "
            "unreadable, exit 2, never clean; on the clean fixtures, \"clean\" is the right answer.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="also write the table to this markdown file")
    parser.add_argument("--modelscan", default=shutil.which("modelscan") or "/tmp/scanvenv/bin/modelscan")
    args = parser.parse_args()
    out = Path(args.out).resolve() if args.out else None  # before the chdir into the corpus
    folder = Path(tempfile.mkdtemp(prefix="ckpt-hostile-"))
    files = build_corpus(folder)
    clean = {f"clean: {name}": folder / name for name in CLEAN}
    for path in clean.values():
        shutil.copy(ROOT / "fixtures" / path.name, path)
    files.update(clean)
    os.chdir(folder)
    rows = {name: (_ckpttool(p), _picklescan(p), _fickling(p)) for name, p in files.items()}
    ms = _modelscan(args.modelscan, folder, files)
    lines = ["| case | ckpttool | picklescan | fickling | modelscan |", "|---|---|---|---|---|"]
    for name in [c.name for c in CASES] + list(clean):
        cells = [*rows[name], ms[name]]
        if name in clean:  # on a clean file, "said nothing" is the right answer
            cells = ["clean" if v.startswith("MISSED") else v for v in cells]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    hostile = [c.name for c in CASES]
    totals = []
    for i, tool in enumerate(("ckpttool", "picklescan", "fickling")):
        missed = sum(1 for n in hostile if rows[n][i].startswith("MISSED"))
        noisy = sum(1 for n in clean if not rows[n][i].startswith("MISSED"))  # MISSED == said clean
        totals.append(f"{tool}: {missed} missed, {noisy} clean files flagged")
    missed = sum(1 for n in hostile if ms[n].startswith("MISSED"))
    noisy = sum(1 for n in clean if not ms[n].startswith("MISSED"))
    totals.append(f"modelscan: {missed} missed, {noisy} clean files flagged")
    lines.append("")
    lines.append(f"{len(CASES)} hostile cases, {len(clean)} clean fixtures; " + "; ".join(totals) + ".")
    markers = sorted(p.name for p in folder.glob("PWNED-*"))
    lines.append(f"Payload markers after all scans: {markers or 'none'}.")
    text = "\n".join([*_header(args.modelscan), *lines])
    print(text)
    if out is not None:
        out.write_text(text + "\n")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
