"""DeepSpeed checkpoint folders (``engine.save_checkpoint``), read as one checkpoint without DeepSpeed.

A folder holds ``latest`` (the tag of the newest save) and one sub-folder per tag
(``global_stepN/``) with:

- ``mp_rank_00_model_states.pt`` (ZeRO-0/1/2) or ``zero_pp_rank_R_mp_rank_00_model_states.pt`` (one
  per rank, ZeRO-3): ``module`` (the 16-bit weights as views of flat storages; ZeRO-3 saves
  0-element placeholders), ``buffer_names``, ``param_shapes``, ``shared_params`` (tied names),
  ``frozen_param_shapes``/``frozen_param_fragments``, ``lr_scheduler``, ``global_steps``, ... and
  the client state the training script passed, at the top level;
- ``[bf16_]zero_pp_rank_R_mp_rank_00_optim_states.pt``: each rank's ``optimizer_state_dict`` with
  its flat fp32 partition, the loss scaler, ``zero_stage`` and the base optimizer's state.

Every file goes through ckpttool's safe reader. The tree this module returns puts the
consolidated fp32 weights (see ``zero_partitions``) under ``module``, the 16-bit module weights
under ``module16``, rank 0's optimizer state, the scheduler, the loss scaler and the scalars
beside them, and every file's own tree under ``files`` so nothing in the folder goes unseen.

ZeRO-1 saves no frozen-parameter record, and DeepSpeed's consolidation leaves frozen parameters
out; here they are taken from the 16-bit ``module`` weights (the values ZeRO-2 would have saved
for them) and named in ``frozen_from_module16``, never dropped in silence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckpttool.errors import CkptError, UnreadableCheckpoint, UnsupportedFormat, UsageError
from ckpttool.io.formats.zero_partitions import as_float32, zero2_params, zero3_frozen, zero3_params
from ckpttool.model import PickledDict, Stub, TensorRef

if TYPE_CHECKING:  # pragma: no cover
    from ckpttool.io import TreeRead

__all__ = ["is_deepspeed_folder", "read_deepspeed", "tag_folder", "DS_KEYS"]

MODEL_SUFFIX = "_model_states.pt"
OPTIM_SUFFIX = "_optim_states.pt"
_MAX_LATEST = 4096
# What engine.save_checkpoint writes into a model states file itself; the rest is client state.
DS_KEYS = frozenset({
    "module", "buffer_names", "optimizer", "param_shapes", "frozen_param_shapes", "shared_params",
    "frozen_param_fragments", "lr_scheduler", "data_sampler", "random_ltd", "skipped_steps", "global_steps",
    "global_samples", "dp_world_size", "mp_world_size", "checkpoint_parallel_dimensions", "ds_config",
    "ds_version", "universal_checkpoint_info",
})
_SCALARS = ("global_steps", "global_samples", "skipped_steps", "dp_world_size", "mp_world_size", "ds_version")


def _natural(name: str) -> list[Any]:
    """DeepSpeed's own file order (``natural_keys``): rank 10 after rank 9."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _has_states(folder: Path) -> bool:
    return any(p.name.endswith(MODEL_SUFFIX) for p in folder.iterdir() if p.is_file())


def _latest(folder: Path) -> str | None:
    latest = folder / "latest"
    if not latest.is_file():
        return None
    if latest.stat().st_size > _MAX_LATEST:
        raise UnreadableCheckpoint("the 'latest' file is too large to hold a tag", path=latest)
    tag = latest.read_bytes().decode("utf-8", "replace").strip()
    if not tag or "/" in tag or "\\" in tag or tag in (".", "..") or "\x00" in tag:
        raise UnreadableCheckpoint(f"'latest' names {tag!r}, not a tag folder beside it", path=latest)
    return tag


def tag_folder(path: Path) -> Path | None:
    """The ``global_stepN`` folder to read for ``path`` (the root or a tag folder), or None."""
    if not path.is_dir():
        return None
    if _has_states(path):
        return path
    try:
        tag = _latest(path)
    except UnreadableCheckpoint:
        return path / "latest"  # reported by read_deepspeed
    if tag is not None:
        return path / tag
    tags = [p for p in path.iterdir() if p.is_dir() and _has_states(p)]
    if len(tags) == 1:
        return tags[0]
    return path if tags else None


def is_deepspeed_folder(path: Path) -> bool:
    """A folder with ``latest`` and a tag folder, or a tag folder itself (``*_model_states.pt``)."""
    if not path.is_dir():
        return False
    if _has_states(path) or (path / "latest").is_file():
        return True
    return any(p.is_dir() and _has_states(p) for p in path.iterdir())


def _files(folder: Path, suffix: str) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix)),
                  key=lambda p: _natural(p.name))


def _read(path: Path, root: Path, loads: list[Any], anomalies: list[str]) -> Any:
    from ckpttool.io import read_tree

    name = str(path.relative_to(root))
    try:
        read = read_tree(path)
    except CkptError as exc:
        exc.message = f"{name}: {exc.message}"
        raise
    for load in read.loads:
        load.where = f"{name}: {load.where}"
    loads.extend(read.loads)
    anomalies.extend(f"{name}: {a}" for a in read.anomalies)
    return read.tree


def _stage(value: Any) -> int | None:
    """``zero_stage``: an int, or DeepSpeed's ``ZeroStageEnum`` read as a stand-in (``ZeroStageEnum(2)``)."""
    if isinstance(value, Stub) and value.args and type(value.args[0]) is int:
        return value.args[0]
    return value if type(value) is int else None


def _world(value: Any) -> int | None:
    if isinstance(value, list) and value and all(type(v) is int for v in value):
        return max(value)  # ZeRO-2 records one count per group (expert groups may differ)
    return value if type(value) is int else None


def _dtype(states: dict[str, Any], module: dict[str, Any]) -> str:
    cfg = states.get("ds_config")
    if isinstance(cfg, dict):
        for key, name in (("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("fp16", "float16")):
            sub = cfg.get(key)
            if isinstance(sub, dict) and sub.get("enabled") is True:
                return name
    buffers = set(states.get("buffer_names") or ())
    kinds = [t.dtype for k, t in module.items() if isinstance(t, TensorRef) and k not in buffers]
    return kinds[0] if kinds else "float32"


def _dict(value: Any, what: str, path: Path) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise UnreadableCheckpoint(f"{what} is not a dict", path=path)
    return value


def _shapes(value: Any, path: Path) -> list[dict[str, tuple[int, ...]]]:
    if not isinstance(value, list) or not all(isinstance(g, dict) for g in value):
        raise UnreadableCheckpoint("param_shapes is not a list of dicts", path=path)
    for g in value:
        for name, shape in g.items():
            if not isinstance(name, str) or not isinstance(shape, tuple | list) \
                    or not all(type(s) is int and s >= 0 for s in shape):
                raise UnreadableCheckpoint(f"param_shapes holds a bad entry for {name!r}", path=path)
    return value


def _consolidate(tag: Path, stage: int, states: list[dict[str, Any]], optims: list[dict[str, Any]],
                 notes: dict[str, Any]) -> PickledDict:
    """The fp32 state_dict ``get_fp32_state_dict_from_zero_checkpoint`` returns, as lazy tensors."""
    first = states[0]
    module = _dict(first.get("module"), "module", tag)
    names = [str(n) for n in first.get("buffer_names") or ()]
    out = PickledDict(ordered=True)
    for key, t in module.items():  # buffers first, in module order, floating ones as fp32
        if key in names and isinstance(t, TensorRef):
            out[key] = as_float32(t)
    shapes = _shapes(first.get("param_shapes"), tag)
    frozen_shapes = first.get("frozen_param_shapes")
    shared = first.get("shared_params") or {}
    if stage <= 2:
        if isinstance(frozen_shapes, dict) and frozen_shapes:
            frags = _dict(first.get("frozen_param_fragments"), "frozen_param_fragments", tag)
            for name in frozen_shapes:
                if not isinstance(frags.get(name), TensorRef):
                    raise UnreadableCheckpoint(f"no fragment for the frozen parameter {name}", path=tag)
                out[name] = frags[name]
        elif frozen_shapes is None:
            trained = {n for g in shapes for n in g}
            frozen = [k for k, t in module.items() if isinstance(t, TensorRef) and k not in names
                      and k not in trained and k not in shared]
            for name in frozen:
                out[name] = module[name]
            if frozen:
                notes["frozen_from_module16"] = frozen
        key = "single_partition_of_fp32_groups"
        parts = [_dict(o, "optimizer_state_dict", tag).get(key) for o in optims]
        if not all(isinstance(p, list) for p in parts):
            raise UnreadableCheckpoint(f"an optimizer file has no {key}", path=tag)
        pads = optims[0].get("param_alignment_paddings")
        out.update(zero2_params(shapes, parts, pads if isinstance(pads, list) else None, tag))
    else:
        if isinstance(frozen_shapes, dict) and frozen_shapes:
            out.update(zero3_frozen(frozen_shapes, [s.get("frozen_param_fragments") for s in states], tag))
        groups = [o.get("fp32_flat_groups") for o in optims]
        if not all(isinstance(g, list) for g in groups):
            raise UnreadableCheckpoint("an optimizer file has no fp32_flat_groups", path=tag)
        out.update(zero3_params(shapes, groups, tag))
    if isinstance(shared, dict):
        for alias, owner in shared.items():
            if owner in out:
                out[alias] = out[owner]
    return out


def _locate(path: Path) -> Path:
    """The tag folder to read, or the precise reason there is none."""
    tag = tag_folder(path)
    if tag is None or tag.name == "latest":
        if tag is not None:
            _latest(path)  # raises the precise error
        raise UnreadableCheckpoint("no DeepSpeed tag folder with *_model_states.pt files here", path=path)
    if not tag.is_dir():
        raise UnreadableCheckpoint(f"'latest' names {tag.name!r}, which is not a folder here", path=path)
    if not _has_states(tag):
        several = [p.name for p in path.iterdir() if p.is_dir() and _has_states(p)]
        if several:
            raise UsageError(f"several DeepSpeed tags and no 'latest': {', '.join(sorted(several))}",
                             hint="pass the tag folder itself", path=path)
        raise UnreadableCheckpoint(f"{tag.name} holds no *_model_states.pt file", path=path)
    return tag


def _check_ranks(tag: Path, stage: int, world: Any, states: list[Any], optims: list[Any]) -> None:
    if stage > 3:
        raise UnreadableCheckpoint(f"unknown ZeRO stage {stage}", path=tag)
    if world != len(optims):
        raise UnreadableCheckpoint(f"ZeRO partition count {world} but {len(optims)} *{OPTIM_SUFFIX} files "
                                   "(a save that did not finish on every rank?)", path=tag)
    if stage == 3 and len(states) != world:
        raise UnreadableCheckpoint(f"ZeRO-3 over {world} ranks but {len(states)} *{MODEL_SUFFIX} files", path=tag)


def _optimizer(first: dict[str, Any], optims: list[dict[str, Any]]) -> Any:
    """Rank 0's base optimizer state (ZeRO), or the engine's own optimizer state (no ZeRO)."""
    if optims:
        return optims[0].get("base_optimizer_state", optims[0].get("optimizer_state_dict"))
    base = first.get("optimizer")
    if isinstance(base, dict) and "param_groups" not in base and isinstance(base.get("optimizer_state_dict"), dict):
        return base["optimizer_state_dict"]  # the 16-bit optimizer wrapper's state around it
    return base


def _add_facts(tree: PickledDict, first: dict[str, Any], notes: dict[str, Any]) -> None:
    """The run's scalars, the client state and the config, beside the sections."""
    for key in _SCALARS:
        if key in first:
            tree[key] = first[key]
    if notes.get("frozen_from_module16"):
        tree["frozen_from_module16"] = ", ".join(notes["frozen_from_module16"])
    for key, value in first.items():  # the client state the training script saved
        if key not in DS_KEYS and key not in tree:
            tree[key] = value
    if isinstance(first.get("ds_config"), dict):
        tree["config"] = first["ds_config"]


def read_deepspeed(path: Path) -> TreeRead:
    """One tree for a DeepSpeed checkpoint folder (see the module docstring)."""
    from ckpttool.io import TreeRead

    tag = _locate(path)
    loads: list[Any] = []
    anomalies: list[str] = []
    files = PickledDict(ordered=True)
    model_files, optim_files = _files(tag, MODEL_SUFFIX), _files(tag, OPTIM_SUFFIX)
    for f in [*model_files, *optim_files]:
        files[str(f.relative_to(path))] = _read(f, path, loads, anomalies)
    states = [_dict(files[str(f.relative_to(path))], f.name, tag) for f in model_files]
    optims = [_dict(files[str(f.relative_to(path))], f.name, tag).get("optimizer_state_dict") for f in optim_files]
    if not all(isinstance(o, dict) for o in optims):
        raise UnreadableCheckpoint("an *_optim_states.pt file holds no optimizer_state_dict", path=tag)
    first = states[0]
    mp = first.get("mp_world_size")
    if type(mp) is int and mp > 1:
        raise UnsupportedFormat(f"a model-parallel DeepSpeed checkpoint (mp_world_size {mp}): only "
                                "data-parallel ZeRO folders are consolidated", path=tag)
    stage = (_stage(optims[0].get("zero_stage")) if optims else None) or 0
    world = _world(optims[0].get("partition_count")) if stage else 1
    module = _dict(first.get("module"), "module", tag)
    dtype = _dtype(first, module)
    tree = PickledDict(ordered=True)
    notes: dict[str, Any] = {}
    if stage:
        _check_ranks(tag, stage, world, states, optims)
        tree["module"] = _consolidate(tag, stage, states, optims, notes)
    else:
        tree["module"] = module
        if dtype != "float32":
            anomalies.append(f"no ZeRO partitions (stage 0): the model section is the module as saved, in "
                             f"{dtype}; a 16-bit run's fp32 master copy is not consolidated")
    if stage <= 2:
        tree["module16"] = module
    tree["optimizer"] = _optimizer(first, optims)
    tree["lr_scheduler"] = first.get("lr_scheduler")
    if optims and "loss_scaler" in optims[0]:
        tree["loss_scaler"] = optims[0]["loss_scaler"]
    tree.update({"zero_stage": stage, "world_size": world, "dtype": dtype, "tag": tag.name})
    _add_facts(tree, first, notes)
    tree["files"] = files
    members = {"tag": tag.name, "zero_stage": stage, "world_size": world,
               "frozen_from_module16": notes.get("frozen_from_module16", []),
               "module_only": stage == 0 and dtype != "float32"}
    size = sum(p.stat().st_size for p in [*model_files, *optim_files])
    return TreeRead(path, "deepspeed", tree, size, loads, anomalies, members=members)
