"""Globals that real checkpoints name and that look alarming by their module, but cannot run code.

``classify`` calls every standard-library global outside the allow-list dangerous (private stdlib
helpers run programs), and everything under ``torch.distributed`` too. Real files name a few such
globals that are inert: omegaconf stores ``typing.Any`` as the ``ref_type`` of every node of a
Hydra config that Lightning's ``save_hyperparameters`` pickles; ``torch.save`` of a DTensor pickles
its mesh and placements by class. They are listed here by exact ``module.qualname``, never by
prefix: ``typing.get_type_hints`` or ``typing.ForwardRef`` (which evaluate strings) and
``torch.distributed.tensor.DTensor.from_local`` stay dangerous.
"""

from __future__ import annotations

__all__ = ["BENIGN_DATA_GLOBALS", "BENIGN_STAND_INS"]

# typing's special forms: markers and aliases. Called, each raises TypeError or builds an empty
# dict/deque; none evaluates, imports or runs anything.
_TYPING_FORMS = (
    "Any", "Union", "Optional", "List", "Dict", "Tuple", "Set", "FrozenSet", "Callable", "Type",
    "Sequence", "Mapping", "MutableMapping", "MutableSequence", "Iterable", "Iterator", "Literal",
    "ClassVar", "Final", "Annotated", "NoReturn", "DefaultDict", "OrderedDict", "Deque",
)

# pathlib's classes live in pathlib._local from Python 3.13 on and pickle under that name.
_PATHLIB_CLASSES = ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")

BENIGN_DATA_GLOBALS: frozenset[str] = frozenset(
    {f"typing.{name}" for name in _TYPING_FORMS}
    | {f"pathlib._local.{name}" for name in _PATHLIB_CLASSES}
    | {"pathlib.PurePath"}
)

# Classes read as stand-ins (their state recorded, nothing called) although their package is one
# whose other names load or run things: the older torch.distributed._tensor spellings of DTensor's
# spec and placements. The current names are decoded as DTensor entries (TENSOR_TYPE_GLOBALS in
# globals_policy.py), so they are data there, not listed here.
BENIGN_STAND_INS: frozenset[str] = frozenset(
    {
        "torch.distributed._tensor.placement_types.DTensorSpec",
        "torch.distributed._tensor.placement_types.TensorMeta",
        "torch.distributed._tensor.placement_types.Shard",
        "torch.distributed._tensor.placement_types.Replicate",
        "torch.distributed._tensor.placement_types.Partial",
    }
)
