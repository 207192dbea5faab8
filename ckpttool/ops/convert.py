"""``convert``: torch ↔ safetensors (single or sharded), dtype casts, EMA/release forms, sanitising.

What is written:
- safetensors output holds one state_dict: the model section, or ``--section``/``--ema``; the
  checkpoint's other plain values go into ``__metadata__`` as JSON strings (``format: pt``,
  ``epoch``...), tied tensors are stored once and recorded as aliases (see ``io/write/aliases.py``).
- torch output from a safetensors or sharded input is the state_dict with its aliases restored;
  from a torch input it is the whole checkpoint (``--sanitize`` makes it weights_only-loadable),
  or one state_dict with ``--section``/``--ema``/``--strip-optimizer`` (the release form).
- ``--dtype`` casts floating model/EMA tensors only (never optimizer state or integer buffers).
- entries that are not plain tensors (quantized, sparse, nested, DTensor, torchao, unknown
  subclasses) are never written nor left out silently: the write is refused, naming the key,
  unless ``--drop PATTERN`` excludes them (reported as ``excluded``); ``--quantized-parts`` writes
  quantized ones to safetensors as their documented parts (``ops/quantized_parts.py``).
Everything is streamed: tensors are read, cast and written chunk by chunk.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import OutputRefused, SectionNotFound, UsageError
from ckpttool.io import open_checkpoint
from ckpttool.io.formats.dcp import BYTES_ITEM
from ckpttool.io.pickle.rebuilt import plain_value
from ckpttool.io.tensor_findings import refuse_composites
from ckpttool.io.write.aliases import alias_metadata, dedupe, restore
from ckpttool.io.write.cast import Caster, parse_dtype
from ckpttool.io.write.checkpoint import WriteResult, output_format, write_checkpoint
from ckpttool.io.write.safetensors import safetensors_layout
from ckpttool.io.write.sanitize import Change, Sanitizer
from ckpttool.model import Checkpoint, PickledDict, StateDict, Stub, TensorRef
from ckpttool.ops.entries import writable_tensors
from ckpttool.ops.quantized_parts import METADATA_KEY as QUANTIZED_KEY
from ckpttool.ops.quantized_parts import expand_quantized
from ckpttool.progress import ProgressSink

__all__ = ["ConvertOptions", "ConvertResult", "convert"]


@dataclass(frozen=True)
class ConvertOptions:
    """What to write; mirrors the CLI flags."""

    section: str | None = None
    ema: bool = False
    dtype: str | None = None
    strip_optimizer: bool = False
    sanitize: bool = False
    max_shard_size: int | None = None
    hash_name: bool = False
    force: bool = False
    drop: tuple[str, ...] = ()
    quantized_parts: bool = False
    jobs: int = 1  # worker processes for shard sets and DCP folders (the same bytes for any number)
    dcp_file_bytes: int | None = None  # DCP output: tensor bytes per data file (None: the writer's default)


@dataclass
class ConvertResult:
    """What ``convert`` read and wrote."""

    input: Path
    input_format: str
    layout: str
    output: Path
    output_format: str
    content: str  # "checkpoint" (the whole tree) or the section written ("model", "ema", ...)
    sha256: str
    tensors: int
    nbytes: int
    shards: list[WriteResult] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)
    dtype: str | None = None
    cast: int = 0
    not_cast: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1, "input": str(self.input), "input_format": self.input_format,
            "layout": self.layout, "output": str(self.output), "format": self.output_format,
            "content": self.content, "sha256": self.sha256, "tensors": self.tensors, "nbytes": self.nbytes,
            "shards": [{"path": str(s.path), "sha256": s.sha256, "tensors": s.tensors, "nbytes": s.nbytes}
                       for s in self.shards] if len(self.shards) > 1 else [],
            "aliases": self.aliases, "views": self.views, "dtype": self.dtype, "cast": self.cast,
            "not_cast": self.not_cast,
            "sanitized": [c.to_dict() for c in self.changes], "dropped": self.dropped,
            "metadata": self.metadata, "notes": self.notes, "excluded": self.excluded,
        }


def _input_files(ckpt: Checkpoint) -> tuple[Path, ...]:
    """Every file the input consists of (an output may overwrite none of them)."""
    path = ckpt.path
    if ckpt.format == "deepspeed":  # the root, its tag folders and every file under them
        return (path, *sorted(p for p in path.rglob("*") if p.is_file()))
    if path.is_dir() or ckpt.format in ("sharded", "dcp", "hf-trainer"):
        folder = path if path.is_dir() else path.parent
        return (path, *sorted(p for p in folder.iterdir() if p.is_file()))
    return (path,)


def _ema(ckpt: Checkpoint) -> StateDict:
    try:
        from ckpttool.ops.ema import ema_state_dict
    except ImportError:  # pragma: no cover - the ema operation is optional
        return ckpt.state_dict("ema")
    return ema_state_dict(ckpt)


def _selected(ckpt: Checkpoint, opts: ConvertOptions, target: str = "the output"
              ) -> tuple[str, StateDict, list[str], dict[str, Any]]:
    """The state_dict to write, less the ``--drop`` keys, and the ``--quantized-parts`` records.

    Refuses to leave out anything else.
    """
    content, sd = _section_state_dict(ckpt, opts)
    records: dict[str, Any] = {}
    if opts.quantized_parts:
        sd, records = expand_quantized(sd)
    tensors, excluded = writable_tensors(sd, opts.drop, target=target)
    return content, StateDict(tensors, sd.parameters, sd.extras, sd.version_metadata), excluded, records


def _section_state_dict(ckpt: Checkpoint, opts: ConvertOptions) -> tuple[str, StateDict]:
    if opts.ema:
        return "ema", _ema(ckpt)
    kind = opts.section or "model"
    try:
        return kind, ckpt.state_dict(kind)
    except SectionNotFound as exc:
        if opts.section is None and ckpt.format in ("safetensors", "sharded"):
            return "model", StateDict({k: v for k, v in (ckpt.tree or {}).items() if isinstance(v, TensorRef)})
        if kind == "model" and ckpt.layout == "diffusers-pipeline" and ckpt.sections:
            exc.hint = f"a pipeline of components: write one with --section {next(iter(ckpt.sections))}"
        if kind == "model" and "ema" in ckpt.sections:
            exc.hint = "this checkpoint holds only averaged weights: pass --ema"
        if kind == "model" and ckpt.layout == "deepspeed-model-states":
            exc.hint = ("one file of a DeepSpeed checkpoint: pass the folder to consolidate the fp32 weights, "
                        "or --section model16 for the 16-bit module weights")
        if kind == "model16" and ckpt.format == "deepspeed":
            exc.hint = ("ZeRO-3 saves only 0-element placeholders for the 16-bit weights: convert the fp32 "
                        "master weights (the default) and cast them with --dtype")
        raise


def _restored(ckpt: Checkpoint, sd: StateDict, content: str) -> tuple[dict[str, TensorRef], dict[str, str]]:
    """The state_dict with the aliases a ckpttool-written safetensors recorded put back."""
    if ckpt.format in ("safetensors", "sharded") or (ckpt.format == "hf-trainer" and content == "model"):
        return restore(sd.tensors, ckpt.members.get("__metadata__") or {})
    return dict(sd.tensors), {}


def _jsonable_meta(ckpt: Checkpoint, content: str) -> dict[str, str]:
    from ckpttool.jsonable import to_jsonable

    out: dict[str, str] = {}
    if ckpt.format in ("safetensors", "sharded"):
        out.update({k: v for k, v in (ckpt.members.get("__metadata__") or {}).items()
                    if not k.startswith("ckpttool.") and k != "total_size"})
    values = _dcp_values(ckpt)
    for key, value in ckpt.meta.items():
        if isinstance(value, Stub) and value.qualname == BYTES_ITEM and value.args and value.args[0] in values:
            value = values[value.args[0]]
        name = str(key) if str(key) != "format" else "meta.format"
        out[name] = json.dumps(to_jsonable(value, max_nodes=2000), ensure_ascii=False, default=str)
    out["format"] = "pt"
    out["ckpttool.section"] = content
    if ckpt.layout not in ("unknown", "state_dict"):
        out["ckpttool.layout"] = ckpt.layout
    return out


def _cast_all(tensors: dict[str, TensorRef], caster: Caster | None) -> dict[str, TensorRef]:
    if caster is None:
        return tensors
    return {k: caster(t, k) for k, t in tensors.items()}


def _to_safetensors(ckpt: Checkpoint, output: Path, opts: ConvertOptions, caster: Caster | None,
                    inputs: tuple[Path, ...], progress: ProgressSink | None = None) -> ConvertResult:
    content, sd, excluded, quantized = _selected(ckpt, opts, "a safetensors file")
    tensors, _ = _restored(ckpt, sd, content)
    tensors = _cast_all(tensors, caster)
    deduped = dedupe(tensors)
    unique, aliases = deduped.tensors, deduped.aliases
    written_order = list(safetensors_layout(unique))
    metadata = _jsonable_meta(ckpt, content)
    metadata.update(alias_metadata(list(tensors), written_order, deduped))
    if quantized:
        metadata[QUANTIZED_KEY] = json.dumps(quantized, separators=(",", ":"))
    notes = []
    dropped = sorted(str(k) for k, s in ckpt.sections.items() if k not in (content, "meta") and s.value is not None)
    if dropped:
        notes.append(f"safetensors holds tensors only: wrote the {content} section, left out {', '.join(dropped)}")
    if opts.max_shard_size:
        from ckpttool.io.formats.sharded import write_sharded

        main, shards = write_sharded(unique, output, opts.max_shard_size, metadata=metadata, inputs=inputs,
                                     force=opts.force, jobs=opts.jobs, progress=progress)
    else:
        main = write_checkpoint(unique, output, inputs=inputs, force=opts.force, metadata=metadata,
                                hash_name=opts.hash_name, progress=progress)
        shards = [main]
    return ConvertResult(ckpt.path, ckpt.format, ckpt.layout, main.path, main.format, content, main.sha256,
                         len(unique), main.nbytes, shards=shards, aliases=aliases, dropped=dropped,
                         metadata=metadata, notes=notes, views={k: v[0] for k, v in deduped.views.items()},
                         excluded=excluded)


def _section_ids(ckpt: Checkpoint) -> set[int]:
    ids: set[int] = set()
    for kind in ("model", "ema"):
        s = ckpt.sections.get(kind)
        if s is not None and s.state_dict is not None:
            ids.update(id(t) for t in s.state_dict.tensors.values())
    return ids


def _dcp_values(ckpt: Checkpoint) -> dict[str, Any]:
    """The non-tensor entries of a DCP folder, loaded through torch's DCP reader."""
    if ckpt.format != "dcp":
        return {}
    from ckpttool.io.formats.dcp import load_dcp_values

    return load_dcp_values(ckpt.path, list(ckpt.members.get("dcp_values") or []))


def _transform(ckpt: Checkpoint, caster: Caster | None, sanitizer: Sanitizer | None
               ) -> Callable[[Any, Any], Any] | None:
    ids = _section_ids(ckpt) if caster is not None else set()
    values = _dcp_values(ckpt)

    def fn(obj: Any, path: Any) -> Any:
        if isinstance(obj, TensorRef):
            return caster(obj) if caster is not None and id(obj) in ids else obj
        if values and isinstance(obj, Stub) and obj.qualname == BYTES_ITEM and obj.args and obj.args[0] in values:
            return values[obj.args[0]]
        return sanitizer(obj, path) if sanitizer is not None else obj

    return fn if caster is not None or sanitizer is not None or values else None


def _to_torch(ckpt: Checkpoint, output: Path, opts: ConvertOptions, caster: Caster | None,
              inputs: tuple[Path, ...], progress: ProgressSink | None = None) -> ConvertResult:
    whole = (ckpt.format not in ("safetensors", "sharded", "torch-export", "peft", "diffusers") and not opts.ema
             and opts.section is None and not opts.strip_optimizer)
    whole = whole and ckpt.format != "deepspeed"  # like DeepSpeed's own tools: the consolidated weights
    notes: list[str] = []
    if whole:
        if opts.drop:
            raise UsageError("--drop leaves entries out of one state_dict: add --section model (or --ema)",
                             hint="a whole torch checkpoint is rewritten as it was read")
        sanitizer = Sanitizer(tensor_fn=None) if opts.sanitize else None
        if sanitizer is not None and caster is not None:
            ids = _section_ids(ckpt)
            sanitizer.tensor_fn = lambda t: caster(t) if id(t) in ids else t
        written = write_checkpoint(ckpt.tree, output, inputs=inputs, force=opts.force, hash_name=opts.hash_name,
                                   transform=_transform(ckpt, caster, sanitizer), progress=progress)
        changes = sanitizer.changes if sanitizer else []
        return ConvertResult(ckpt.path, ckpt.format, ckpt.layout, written.path, written.format, "checkpoint",
                             written.sha256, written.tensors, written.nbytes, shards=[written],
                             changes=changes, notes=notes)
    content, sd, excluded, _ = _selected(ckpt, opts, "a torch file written by ckpttool")
    tensors, aliases = _restored(ckpt, sd, content)
    tree = PickledDict(_cast_all(tensors, caster), ordered=True)
    if sd.version_metadata:
        tree.attrs["_metadata"] = PickledDict(sd.version_metadata, ordered=True)
    dropped = sorted(k for k in ckpt.sections if k not in (content, "meta")) if ckpt.format not in (
        "safetensors", "sharded") else []
    if opts.strip_optimizer:
        notes.append(f"release form: the {content} state_dict only")
    written = write_checkpoint(tree, output, inputs=inputs, force=opts.force, hash_name=opts.hash_name,
                               progress=progress)
    return ConvertResult(ckpt.path, ckpt.format, ckpt.layout, written.path, written.format, content,
                         written.sha256, written.tensors, written.nbytes, shards=[written], aliases=aliases,
                         dropped=dropped, notes=notes, excluded=excluded)


def _to_bin_shards(ckpt: Checkpoint, output: Path, opts: ConvertOptions, caster: Caster | None,
                   inputs: tuple[Path, ...], progress: ProgressSink | None = None) -> ConvertResult:
    """A Hugging Face ``.bin`` shard set of the selected state_dict (see io/write/bin_shards.py)."""
    from ckpttool.io.write.bin_shards import write_bin_shards

    content, sd, excluded, _ = _selected(ckpt, opts, "a .bin shard set")
    tensors, aliases = _restored(ckpt, sd, content)
    main, shards = write_bin_shards(_cast_all(tensors, caster), output, opts.max_shard_size or 0,
                                    inputs=inputs, force=opts.force, progress=progress)
    dropped = sorted(k for k in ckpt.sections if k not in (content, "meta"))
    notes = [f"a .bin shard set holds one state_dict: wrote the {content} section"] if dropped else []
    return ConvertResult(ckpt.path, ckpt.format, ckpt.layout, main.path, main.format, content, main.sha256,
                         main.tensors, main.nbytes, shards=shards, aliases=aliases, dropped=dropped, notes=notes,
                         excluded=excluded)


def _no_stubs(fn: Callable[[Any, Any], Any] | None, output: Path) -> Callable[[Any, Any], Any]:
    """``fn``, then a refusal of any pickled object left (a DCP folder holds plain data and tensors)."""

    def check(obj: Any, path: Any) -> Any:
        obj = fn(obj, path) if fn is not None else obj
        if isinstance(obj, Stub):
            raise OutputRefused(f"{'.'.join(map(str, path or ()))} is a pickled {obj.qualname}, which a DCP folder "
                                "cannot hold (it keeps plain data and tensors)", path=output,
                                hint="pass --sanitize to write it as plain data, or --section model for the weights")
        return plain_value(obj)  # numpy scalars and torch.Size as read: plain values in a DCP folder

    return check


def _to_dcp(ckpt: Checkpoint, output: Path, opts: ConvertOptions, caster: Caster | None,
            inputs: tuple[Path, ...], progress: ProgressSink | None = None) -> ConvertResult:
    """Stream the checkpoint (or one state_dict) into a DCP folder; see ``io/write/dcp.py``."""
    from ckpttool.io.write.dcp import write_dcp_folder

    sanitizer = Sanitizer() if opts.sanitize else None
    if ckpt.format in ("safetensors", "sharded") or opts.ema or opts.section or opts.strip_optimizer:
        content, sd, _, _ = _selected(ckpt, opts, "a DCP folder written by ckpttool")
        tensors, _ = _restored(ckpt, sd, content)
        tree: Any = dict(_cast_all(tensors, caster))
        fn = None
    else:
        content, tree = "checkpoint", ckpt.tree
        fn = _transform(ckpt, caster, sanitizer)
        refuse_composites(tree, "a DCP folder written by ckpttool")
    if not isinstance(tree, dict):
        raise UsageError("a DCP folder holds a dict; this checkpoint's root is not one")
    from ckpttool.parallel import ranks_from_env

    size = {"file_bytes": opts.dcp_file_bytes} if opts.dcp_file_bytes else {}
    written = write_dcp_folder(tree, output, inputs=inputs, force=opts.force, transform=_no_stubs(fn, output),
                               jobs=opts.jobs, ranks=ranks_from_env(), progress=progress, **size)
    return ConvertResult(ckpt.path, ckpt.format, ckpt.layout, output, "dcp", content, "", written.tensors,
                         written.nbytes, changes=sanitizer.changes if sanitizer else [],
                         notes=["a DCP folder has no single sha256; each tensor is verified by reading it back"])


def _check(opts: ConvertOptions, out_fmt: str) -> None:
    if opts.ema and opts.section not in (None, "ema"):
        raise UsageError("--ema and --section name different sections; pass one of them")
    if opts.max_shard_size and out_fmt not in ("safetensors", "bin-shards"):
        raise UsageError("--max-shard-size writes sharded safetensors or .bin shards: name the output "
                         ".safetensors, pytorch_model.bin or pytorch_model.bin.index.json")
    if opts.dcp_file_bytes and out_fmt != "dcp":
        raise UsageError("--dcp-file-size sizes the data files of a DCP folder: name a folder (no extension or "
                         ".dcp) as the output")
    if opts.max_shard_size and opts.hash_name:
        raise UsageError("--hash-name names one file; it cannot be combined with --max-shard-size")
    if opts.quantized_parts and out_fmt != "safetensors":
        raise UsageError("--quantized-parts writes safetensors (its metadata records how to rebuild them)",
                         hint="torch output cannot be written with quantized tensors by ckpttool: --drop them")
    if opts.section is not None and opts.section in ("optimizer", "scheduler", "scaler", "meta"):
        raise UsageError(f"--section {opts.section!r}: only the model and ema sections (or a pipeline "
                         "component such as unet, or a DeepSpeed folder's model16) hold weights to convert")


def _is_bin_output(output: Path) -> bool:
    from ckpttool.io.write.bin_shards import is_bin_output

    return is_bin_output(output)


def _dcp_output(output: Path, opts: ConvertOptions) -> bool:
    return not opts.max_shard_size and (output.is_dir() or output.suffix in ("", ".dcp"))


def convert(input_path: str | Path, output: str | Path, options: ConvertOptions | None = None,
            progress: ProgressSink | None = None) -> ConvertResult:
    """Convert the checkpoint at ``input_path`` into ``output``; see the module docstring.

    ``progress`` is told the tensor bytes to write and read back (under torchrun: this rank's
    share), then each chunk of both passes, from ``--jobs`` workers too.

    Raises:
        CkptError: unreadable input, a refused output, bad options, a failed verification.
    """
    from ckpttool.parallel import ranks_from_env

    opts = options or ConvertOptions()
    output = Path(output)
    ranks = ranks_from_env()
    if ranks is not None and not (opts.max_shard_size or _dcp_output(output, opts)):
        with ranks:  # one output file: rank 0 writes it, the others wait and get its result (or its error)
            return ranks.on_leader(lambda: convert(input_path, output, opts))
    made: Path | None = None
    if opts.max_shard_size and (output.is_dir() or not output.suffix):  # a folder of shards, made if need be
        if not output.is_dir():
            if not output.parent.is_dir() or (output.exists() and not output.is_dir()):
                raise OutputRefused("the output folder cannot be created here", path=output)
            output.mkdir(exist_ok=True)  # exist_ok: the ranks of a torchrun group race to make it
            made = output
        output = output / "model.safetensors"
    elif opts.max_shard_size and not output.parent.exists() and output.parent.parent.is_dir():
        output.parent.mkdir(exist_ok=True)  # out/model.safetensors: the shard set's folder, as for out/
        made = output.parent
    try:
        return _convert(input_path, output, opts, progress)
    except BaseException:
        if made is not None:
            with contextlib.suppress(OSError):
                made.rmdir()  # only if empty: a failed write leaves no folder behind either
        raise


def _convert(input_path: str | Path, output: Path, opts: ConvertOptions, progress: ProgressSink | None
             ) -> ConvertResult:
    dcp_out = _dcp_output(output, opts)
    bin_shards = bool(opts.max_shard_size) and _is_bin_output(output)
    out_fmt = "dcp" if dcp_out else "bin-shards" if bin_shards else output_format(output)
    _check(opts, out_fmt)
    ckpt = open_checkpoint(input_path)
    inputs = _input_files(ckpt)
    caster = Caster(parse_dtype(opts.dtype)) if opts.dtype else None
    try:
        if out_fmt == "safetensors":
            result = _to_safetensors(ckpt, output, opts, caster, inputs, progress)
        elif out_fmt == "bin-shards":
            result = _to_bin_shards(ckpt, output, opts, caster, inputs, progress)
        elif out_fmt == "dcp":
            if opts.hash_name:
                raise UsageError("--hash-name names one file; a DCP folder is several")
            result = _to_dcp(ckpt, output, opts, caster, inputs, progress)
        else:
            result = _to_torch(ckpt, output, opts, caster, inputs, progress)
    except OutputRefused as exc:
        exc.path = exc.path or output
        raise
    if caster is not None:
        result.dtype, result.cast, result.not_cast = caster.dtype, caster.cast, caster.skipped
    frozen = ckpt.members.get("frozen_from_module16") if ckpt.format == "deepspeed" else None
    if frozen and result.content == "model":
        result.notes.append(f"ZeRO-1 keeps no fp32 copy of frozen parameters and DeepSpeed's consolidation leaves "
                            f"them out; written from the 16-bit module weights: {', '.join(frozen)}")
    if ckpt.format == "deepspeed" and ckpt.members.get("module_only") and result.content == "model":
        result.notes.append("no ZeRO partitions in this folder: wrote the 16-bit module weights as saved, not an "
                            "fp32 master copy")
    if opts.sanitize and out_fmt == "safetensors":
        result.notes.append("--sanitize is only needed for torch output; safetensors holds no pickles")
    return result
