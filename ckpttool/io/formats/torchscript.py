"""TorchScript archives: which attributes of each scripted class are parameters and buffers.

The names are read from the class headers in ``code/`` (``__parameters__ = ["weight", ]``) as
text; the code itself is never compiled or run.
"""

from __future__ import annotations

import re

from ckpttool.io.formats.zip_index import ZipIndex
from ckpttool.modules import ScriptClassInfo

__all__ = ["script_class_info"]

_CLASS = re.compile(r"^class (\w+)\(Module\):\n((?:  .*\n)*)", re.M)
_LIST = re.compile(r'^  __(parameters|buffers)__ = \[([^\]]*)\]', re.M)
MAX_CODE_BYTES = 64 << 20


def script_class_info(index: ZipIndex, root: str) -> ScriptClassInfo:
    """Map ``__torch__.<module path>.<Class>`` to its (parameter names, buffer names)."""
    info: ScriptClassInfo = {}
    prefix = f"{root}/code/"
    budget = MAX_CODE_BYTES
    for name, entry in index.entries.items():
        if not (name.startswith(prefix) and name.endswith(".py")) or entry.size > budget:
            continue
        budget -= entry.size
        module = name[len(prefix):-3].replace("/", ".")
        text = index.read(name, MAX_CODE_BYTES).decode("utf-8", "replace")
        for match in _CLASS.finditer(text):
            lists = {kind: re.findall(r'"([^"]*)"', body) for kind, body in _LIST.findall(match.group(2))}
            info[f"{module}.{match.group(1)}"] = (lists.get("parameters", []), lists.get("buffers", []))
    return info
