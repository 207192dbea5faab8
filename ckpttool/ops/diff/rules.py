"""``--fail-on PATTERN:METRIC>VALUE``: CI thresholds on the keys that matter.

A rule fails on every key matching the glob whose metric passes the threshold. A matching key that
could not be measured (only on one side, changed shape, no finite element) fails the rule too:
a missing backbone tensor matters at least as much as a changed one.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ckpttool.errors import UsageError
from ckpttool.ops.diff.result import RuleOutcome, TensorDiff

__all__ = ["FailRule", "parse_rule", "evaluate", "METRICS"]

METRICS = ("max_abs", "mean_abs", "rel_l2", "cosine", "mismatched", "mismatched_fraction")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_RULE = re.compile(r"^(?P<pattern>.+):(?P<metric>[a-z_]+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>\S+)$")


@dataclass(frozen=True, slots=True)
class FailRule:
    """One parsed rule, e.g. ``backbone.*:max_abs>0`` or ``*:cosine<0.999``."""

    text: str
    pattern: str
    metric: str
    op: str
    value: float

    def matches(self, key: str, qualified: str) -> bool:
        return fnmatch.fnmatchcase(key, self.pattern) or fnmatch.fnmatchcase(qualified, self.pattern)

    def breaks(self, entry: TensorDiff) -> bool:
        """True when ``entry`` fails this rule (assumes the key matched)."""
        if entry.status in ("only_a", "only_b", "shape", "not_compared"):
            return True
        measured = entry.metric(self.metric)
        if measured is None or math.isnan(measured):
            return True
        return _OPS[self.op](measured, self.value)


def parse_rule(text: str) -> FailRule:
    """Parse ``PATTERN:METRIC<op>VALUE``; raises ``UsageError`` naming what is wrong."""
    m = _RULE.match(text.strip())
    if m is None:
        raise UsageError(f"--fail-on expects PATTERN:METRIC>VALUE (e.g. 'backbone.*:max_abs>0'), got {text!r}")
    metric = m["metric"]
    if metric not in METRICS:
        raise UsageError(f"--fail-on metric {metric!r} is not one of {', '.join(METRICS)}")
    try:
        value = float(m["value"])
    except ValueError:
        raise UsageError(f"--fail-on threshold {m['value']!r} is not a number") from None
    return FailRule(text=text.strip(), pattern=m["pattern"], metric=metric, op=m["op"], value=value)


def evaluate(rules: Iterable[FailRule], entries: Iterable[tuple[str, TensorDiff]]) -> list[RuleOutcome]:
    """Each rule with the keys that broke it; ``entries`` are (section, entry) pairs."""
    pairs = list(entries)
    out: list[RuleOutcome] = []
    for rule in rules:
        failed = tuple(f"{section}.{e.key}" if section != "model" else e.key for section, e in pairs
                       if rule.matches(e.key, f"{section}.{e.key}") and rule.breaks(e))
        out.append(RuleOutcome(rule.text, failed))
    return out
