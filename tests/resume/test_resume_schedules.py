"""Schedule models: the built-in formulas, the safe --lr-lambda evaluator, the continuation expression."""

from __future__ import annotations

import itertools
import math

import pytest

from ckpttool.errors import UsageError
from ckpttool.ops.resume.schedules import builtin, continuation, from_expression


@pytest.mark.parametrize("x", [0, 1, 37, 99, 150, 300])
def test_cosine_is_yolov5_one_cycle(x: int) -> None:
    # YOLOv5 utils/general.py one_cycle(y1=1, y2=lrf, steps): ((1 - cos(x*pi/steps)) / 2) * (y2 - y1) + y1
    lrf, epochs = 0.2, 300
    one_cycle = ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    issue = ((1 + math.cos(x * math.pi / epochs)) / 2) * 0.8 + 0.2
    assert builtin("one-cycle", lrf=lrf).factor(x, epochs) == pytest.approx(one_cycle, rel=1e-15)
    assert builtin("cosine", lrf=lrf).factor(x, epochs) == pytest.approx(issue, rel=1e-15)
    assert one_cycle == pytest.approx(issue, rel=1e-12)


def test_linear_step_multistep_poly_constant() -> None:
    assert builtin("linear", lrf=0.01).factor(30, 100) == pytest.approx((1 - 30 / 100) * 0.99 + 0.01)
    assert builtin("step", gamma=0.5, step_size=10).factor(25, 100) == 0.25
    assert builtin("multistep", gamma=0.1, milestones=(30, 60)).factor(60, 100) == pytest.approx(0.01)
    assert builtin("multistep", gamma=0.1, milestones=(30, 60)).factor(59, 100) == pytest.approx(0.1)
    assert builtin("poly", power=2.0).factor(50, 100) == pytest.approx(0.25)
    assert builtin("constant").factor(7, 10) == 1.0


def test_lr_lambda_matches_builtin() -> None:
    expr = from_expression("((1 + cos(x*pi/epochs))/2)*0.8 + 0.2")
    ref = builtin("cosine", lrf=0.2)
    for x in (0, 5, 100, 299):
        assert expr.factor(x, 300) == pytest.approx(ref.factor(x, 300), rel=1e-15)


@pytest.mark.parametrize("bad", [
    "__import__('os').system('touch pwned')",
    "x.__class__",
    "open('/etc/passwd')",
    "y + 1",
    "lambda x: x",
    "x +",
    "[x for x in range(10**9)]",
    "-" * 400 + "x",  # deep enough to overflow a recursive evaluator
    "1e308 * 1e308 + x",  # not finite
    "x / 0",
])
def test_lr_lambda_refuses_anything_but_arithmetic(bad: str) -> None:
    with pytest.raises(UsageError):
        from_expression(bad)


def test_lr_lambda_unknown_schedule_and_huge_power() -> None:
    with pytest.raises(UsageError):
        builtin("exponential-ish")
    with pytest.raises(UsageError):
        from_expression("9 ** 9 ** 9 + x")  # simpleeval caps the power


def test_continuation_is_continuous_and_ends_at_the_old_end() -> None:
    old = builtin("cosine", lrf=0.01)
    cont = continuation(old, 50, 100, 300)
    assert cont is not None
    assert cont.factor(50, 300) == pytest.approx(old.factor(50, 100), rel=1e-12)
    assert cont.factor(300, 300) == pytest.approx(old.factor(100, 100), rel=1e-12)
    values = [cont.factor(x, 300) for x in range(50, 301)]
    assert all(a >= b for a, b in itertools.pairwise(values))  # still monotone
    assert "x" in cont.expression and "epochs" not in cont.expression
