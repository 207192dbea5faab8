"""``remap``: migrate checkpoint keys between architectures (rules, Sequential layouts, alignment).

``plan(keys, rules)`` is pure and cheap; ``remap(path, options, output)`` applies a plan to every
section holding the model's keys and to the optimizer state, and writes the same format as the input.
"""

from __future__ import annotations

from ckpttool.ops.remap.align import Alignment, Coverage, Target, align, coverage
from ckpttool.ops.remap.optimizer import remap_optimizer
from ckpttool.ops.remap.ordering import Decision
from ckpttool.ops.remap.plan import RemapPlan, Rename, plan
from ckpttool.ops.remap.rules import (
    AddPrefix,
    Drop,
    ModuleMap,
    RegexRule,
    Rule,
    StripPrefix,
    StripWrappers,
    parse_map,
    preset,
)
from ckpttool.ops.remap.rules_file import load_rules
from ckpttool.ops.remap.run import RemapOptions, RemapResult, build_rules, remap
from ckpttool.ops.remap.sequential import SequentialLayout, load_layout, to_named, to_sequential

__all__ = [
    "plan", "RemapPlan", "Rename", "remap", "RemapOptions", "RemapResult", "build_rules",
    "Rule", "StripPrefix", "AddPrefix", "StripWrappers", "ModuleMap", "RegexRule", "Drop",
    "load_rules", "parse_map", "preset", "SequentialLayout", "load_layout", "to_sequential", "to_named",
    "align", "Alignment", "Target", "Coverage", "coverage", "remap_optimizer", "Decision",
]
