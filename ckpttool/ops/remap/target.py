"""Where an alignment target comes from: a reference checkpoint, or a model built on the meta device."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ckpttool.errors import CkptError, SectionNotFound, UsageError
from ckpttool.model import Checkpoint, StateDict
from ckpttool.ops.remap.align import Target
from ckpttool.ops.remap.optimizer import parameter_keys

__all__ = ["primary_state_dict", "target_from_checkpoint", "target_from_model"]


def primary_state_dict(ckpt: Checkpoint) -> tuple[str, StateDict]:
    """The section whose keys a remap plans on: the model, or the EMA when that is all there is."""
    for kind in ("model", "ema"):
        sec = ckpt.sections.get(kind)
        if sec is not None and sec.state_dict is not None:
            return kind, sec.state_dict
    try:
        return "model", ckpt.state_dict("model")  # raises SectionNotFound with the list of sections
    except SectionNotFound as exc:
        if ckpt.layout == "diffusers-pipeline" and ckpt.sections:
            exc.hint = (f"remap renames one model: convert a component first (ckpttool convert IN --section "
                        f"{next(iter(ckpt.sections))} -o part.safetensors) and remap that")
        raise


def target_from_checkpoint(path: Path) -> Target:
    """Keys, shapes and parameter order of a reference checkpoint's model."""
    from ckpttool.io import open_checkpoint

    _, sd = primary_state_dict(open_checkpoint(path))
    params, _ = parameter_keys(sd)
    return Target({k: tuple(t.shape) for k, t in sd.items()}, params, source=str(path))


def target_from_model(spec: str) -> Target:
    """Keys and shapes of ``module:callable()``'s state_dict, built on the meta device (no memory, no weights).

    This imports and runs the user's own code (never code from a checkpoint), from the current folder.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--model expects module:callable, got {spec!r}", hint="e.g. --model mypkg.models:Net")
    import torch

    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        with torch.device("meta"):
            model = obj()
        state = model.state_dict()
        params = [name for name, _ in model.named_parameters()]
    except CkptError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code may fail in any way; say so in one line
        raise UsageError(f"--model {spec}: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model {spec} returned a {type(model).__name__}, not an nn.Module")
    return Target({k: tuple(v.shape) for k, v in state.items()}, params, source=spec)
