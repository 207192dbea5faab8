"""The ``weight-norm`` preset: torch's two spellings of a weight-normalised parameter.

``torch.nn.utils.weight_norm`` (deprecated) stores ``<module>.weight_g`` and ``<module>.weight_v``;
``torch.nn.utils.parametrizations.weight_norm`` stores the same two tensors as
``<module>.parametrizations.weight.original0`` (g) and ``.original1`` (v). Values and shapes are
identical, so the move is a pure rename. ``weight-norm`` goes old -> new, ``weight-norm:legacy``
new -> old (for code that still builds its modules with the old function).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ckpttool.errors import UsageError
from ckpttool.ops.remap.rules import Rule

__all__ = ["WeightNorm", "weight_norm_preset"]

_OLD = re.compile(r"(?P<module>(?:.+\.)?)weight_(?P<part>[gv])")
_NEW = re.compile(r"(?P<module>(?:.+\.)?)parametrizations\.weight\.original(?P<part>[01])")
_TO_NEW = {"g": "0", "v": "1"}
_TO_OLD = {"0": "g", "1": "v"}


@dataclass(frozen=True)
class WeightNorm(Rule):
    """``weight_g``/``weight_v`` <-> ``parametrizations.weight.original0``/``original1``."""

    legacy: bool = False

    @property
    def label(self) -> str:
        return "preset weight-norm:legacy" if self.legacy else "preset weight-norm"

    def apply(self, key: str) -> tuple[str | None, str | None]:
        if self.legacy:
            m = _NEW.fullmatch(key)
            return (f"{m['module']}weight_{_TO_OLD[m['part']]}", self.note or self.label) if m else (key, None)
        m = _OLD.fullmatch(key)
        if m is None:
            return key, None
        return f"{m['module']}parametrizations.weight.original{_TO_NEW[m['part']]}", self.note or self.label


def weight_norm_preset(arg: str) -> WeightNorm:
    """``weight-norm`` (to parametrizations) or ``weight-norm:legacy`` (back to weight_g/weight_v)."""
    if arg not in ("", "legacy"):
        raise UsageError(f"unknown weight-norm direction {arg!r}", hint="use weight-norm or weight-norm:legacy")
    return WeightNorm(legacy=arg == "legacy")
