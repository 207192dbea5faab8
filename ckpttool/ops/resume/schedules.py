"""Learning-rate schedules as factors of the base LR, ``f(x, epochs)``, the way training scripts write them.

A ``LambdaLR`` does not save plain lambdas, so a resumed run rebuilds its lambda from the *new*
settings; these models let us evaluate that lambda under the old and the new total. The built-ins
are the formulas YOLOv5/ultralytics use (``one_cycle`` is the same curve as ``cosine``), plus the
closed forms of torch's epoch schedulers. ``--lr-lambda`` expressions go through ``simpleeval``
with only ``x``, ``epochs``, ``lrf`` and math functions in scope: never ``eval``.
"""

from __future__ import annotations

import ast
import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from ckpttool.errors import UsageError

__all__ = ["Schedule", "BUILTINS", "builtin", "from_expression", "continuation", "MATH_NAMES"]

MATH_NAMES: dict[str, object] = {
    "pi": math.pi, "e": math.e, "tau": math.tau,
}
_MATH_FUNCTIONS: dict[str, Callable[..., float]] = {
    "cos": math.cos, "sin": math.sin, "tan": math.tan, "acos": math.acos, "asin": math.asin,
    "atan": math.atan, "exp": math.exp, "log": math.log, "log10": math.log10, "sqrt": math.sqrt,
    "floor": math.floor, "ceil": math.ceil, "abs": abs, "min": min, "max": max, "pow": pow,
    "round": round, "tanh": math.tanh, "cosh": math.cosh, "sinh": math.sinh,
}
_MAX_EXPR = 500
_MAX_DEPTH = 60

# name -> (formula template in x, epochs and the parameters, default lrf)
_TEMPLATES: dict[str, tuple[str, float]] = {
    "cosine": ("((1 + cos(x * pi / epochs)) / 2) * (1 - lrf) + lrf", 0.01),
    "one-cycle": ("((1 - cos(x * pi / epochs)) / 2) * (lrf - 1) + 1", 0.01),
    "linear": ("(1 - x / epochs) * (1 - lrf) + lrf", 0.01),
    "poly": ("(1 - min(x, epochs) / epochs) ** power * (1 - lrf) + lrf", 0.0),
    "step": ("gamma ** floor(x / step_size)", 0.0),
    "multistep": ("gamma ** bisect(milestones, x)", 0.0),
    "constant": ("1", 0.0),
}
BUILTINS = tuple(_TEMPLATES)


@dataclass(frozen=True)
class Schedule:
    """``lr(x) = base_lr * factor(x, epochs)``: one schedule, whatever total it is stretched over.

    ``expression`` is the formula with every parameter filled in (still in ``x`` and ``epochs``), so
    it can be shown to the user and pasted back as ``--lr-lambda``.
    """

    name: str
    expression: str
    fn: Callable[[float, float], float] = field(repr=False, compare=False)
    lrf: float | None = None

    def factor(self, x: float, epochs: float) -> float:
        """The LR multiplier at epoch (or step) ``x`` of a run of ``epochs``."""
        try:
            return float(self.fn(x, epochs))
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise UsageError(f"schedule {self.name!r} cannot be evaluated at x={x}, epochs={epochs}: {exc}") from None


def _fmt(v: float) -> str:
    return repr(float(v)) if not float(v).is_integer() else str(int(v)) if abs(v) < 1e15 else repr(float(v))


def builtin(name: str, *, lrf: float | None = None, gamma: float = 0.1, step_size: int = 30,
            milestones: tuple[int, ...] = (), power: float = 1.0) -> Schedule:
    """A built-in schedule with its parameters filled in.

    Raises:
        UsageError: for an unknown name or parameters that make no schedule.
    """
    if name not in _TEMPLATES:
        raise UsageError(f"unknown schedule {name!r}; choose one of {', '.join(BUILTINS)} or give --lr-lambda")
    template, default_lrf = _TEMPLATES[name]
    f = default_lrf if lrf is None else float(lrf)
    if name == "step" and step_size <= 0:
        raise UsageError("--step-size must be a positive number of epochs")
    ms = tuple(sorted(int(m) for m in milestones))
    expr = (template.replace("lrf", _fmt(f)).replace("gamma", _fmt(gamma))
            .replace("step_size", str(int(step_size))).replace("power", _fmt(power)))
    if name == "multistep":
        fn: Callable[[float, float], float] = lambda x, epochs: gamma ** bisect_right(ms, x)  # noqa: E731
        expr = f"gamma={_fmt(gamma)} at milestones {list(ms)}"
        return Schedule(name, expr, fn, None)
    compiled = _compile(expr, allow_lrf=False)
    return Schedule(name, expr, compiled, f if "lrf" in template else None)


class _NameCheck(ast.NodeVisitor):
    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.bad: list[str] = []

    def visit_Name(self, node: ast.Name) -> None:
        if node.id not in self.allowed:
            self.bad.append(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.bad.append(f"attribute access .{node.attr}")


def _depth(tree: ast.AST) -> int:
    """How deep the expression nests, walked iteratively (the evaluator itself recurses)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d <= _MAX_DEPTH:
            stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _compile(expr: str, *, allow_lrf: bool, lrf: float | None = None) -> Callable[[float, float], float]:
    from simpleeval import SimpleEval

    if len(expr) > _MAX_EXPR:
        raise UsageError(f"--lr-lambda is longer than {_MAX_EXPR} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise UsageError(f"--lr-lambda {expr!r} is not an arithmetic expression: {exc.msg}") from None
    if _depth(tree) > _MAX_DEPTH:
        raise UsageError(f"--lr-lambda nests deeper than {_MAX_DEPTH} levels")
    allowed = {"x", "epochs", *MATH_NAMES, *_MATH_FUNCTIONS} | ({"lrf"} if allow_lrf else set())
    check = _NameCheck(allowed)
    check.visit(tree)
    if check.bad:
        raise UsageError(f"--lr-lambda may use only x, epochs{', lrf' if allow_lrf else ''}, numbers and math "
                         f"functions ({', '.join(sorted(_MATH_FUNCTIONS))}); found {', '.join(check.bad)}")
    evaluator = SimpleEval(functions=dict(_MATH_FUNCTIONS), names={})
    parsed = evaluator.parse(expr.strip())

    def fn(x: float, epochs: float) -> float:
        evaluator.names = {"x": x, "epochs": epochs, "lrf": lrf, **MATH_NAMES}
        try:
            value = evaluator.eval(expr, previously_parsed=parsed)
        except (ArithmeticError, ValueError, TypeError):
            raise
        except Exception as exc:  # noqa: BLE001 - simpleeval's own errors (InvalidExpression...) for user input
            raise ValueError(str(exc)) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"gives {type(value).__name__}, not a number")
        if not math.isfinite(value):
            raise ValueError(f"gives {value}, not a finite number")
        return float(value)

    return fn


def from_expression(expr: str, *, lrf: float | None = None) -> Schedule:
    """A schedule from a user expression in ``x`` and ``epochs`` (and ``lrf`` when known).

    Raises:
        UsageError: for syntax errors, names outside the allowed set, or a value that is not a number.
    """
    fn = _compile(expr, allow_lrf=True, lrf=lrf)
    sched = Schedule("lr-lambda", expr.strip(), fn, lrf)
    for x, epochs in ((0.0, 10.0), (5.0, 10.0)):
        try:
            fn(x, epochs)
        except (ArithmeticError, ValueError, TypeError) as exc:
            if "lrf" in expr and lrf is None:
                raise UsageError("--lr-lambda uses lrf but no --lrf was given or found") from None
            raise UsageError(f"--lr-lambda {expr!r} fails at x={_fmt(x)}, epochs={_fmt(epochs)}: {exc}") from None
    return sched


def continuation(old: Schedule, start: int, old_total: float, new_total: float) -> Schedule | None:
    """A schedule that follows ``old`` up to ``start`` and stretches its remainder over ``new_total``.

    ``x`` in ``[start, new_total]`` maps linearly onto ``[start, old_total]``, so the LR is continuous
    at the resume point and ends where the old run would have ended. None when the old run had no
    remainder to stretch (``start >= old_total``) or the schedule is not a formula.
    """
    if start >= old_total or new_total <= start or old.name == "multistep":
        return None
    k = (old_total - start) / (new_total - start)
    mapped = f"({start} + (x - {start}) * {_fmt(k)})"
    body = old.expression
    tree = ast.parse(body, mode="eval")

    class _Sub(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id == "x":
                return ast.parse(mapped, mode="eval").body
            if node.id == "epochs":
                return ast.Constant(old_total if not float(old_total).is_integer() else int(old_total))
            if node.id == "lrf" and old.lrf is not None:
                return ast.Constant(old.lrf)
            return node

    expr = ast.unparse(_Sub().visit(tree))
    try:
        return from_expression(expr, lrf=old.lrf)
    except UsageError:
        return None
