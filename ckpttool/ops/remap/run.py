"""``remap``: build the rule list from the options, plan it, check it, apply it to the whole checkpoint, write.

Rules run in this order: presets, ``--strip-prefix``, ``--add-prefix``, ``--map``, ``--rules``, then the
derived step (``--to`` with a layout, or alignment to ``--like``/``--model``) on the keys as the
explicit rules left them. Nothing is written when the plan has collisions, when ``strict`` finds an
ambiguity or leftover, in a dry run, or when a target is given and the result would not load into it
with ``load_state_dict(strict=True)`` (unless ``allow_partial``: then the file is written and the
result still says it is partial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpttool.errors import RemapConflict, UsageError
from ckpttool.io.write.sanitize import Sanitizer
from ckpttool.model import Checkpoint, Finding
from ckpttool.ops.remap.align import Alignment, Coverage, Target, align, coverage
from ckpttool.ops.remap.apply import Applied, SectionChange, apply_rules
from ckpttool.ops.remap.optimizer import OptimizerRemap
from ckpttool.ops.remap.ordering import Decision
from ckpttool.ops.remap.plan import RemapPlan, plan
from ckpttool.ops.remap.rules import AddPrefix, Rule, StripPrefix, parse_map, preset
from ckpttool.ops.remap.rules_file import load_rules
from ckpttool.ops.remap.sequential import load_layout, to_named, to_sequential
from ckpttool.ops.remap.target import primary_state_dict, target_from_checkpoint, target_from_model
from ckpttool.progress import ProgressSink

__all__ = ["RemapOptions", "RemapResult", "remap", "build_rules"]

STRICT_CODES = ("remap.ambiguous", "remap.leftover", "remap.missing", "remap.section-skipped")


@dataclass
class RemapOptions:
    """Everything the ``remap`` command line can ask for, as data."""

    strip_prefix: list[str] = field(default_factory=list)
    add_prefix: list[str] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    rules_file: Path | None = None
    presets: list[str] = field(default_factory=list)
    to: str | None = None
    layout: Path | None = None
    like: Path | None = None
    model: str | None = None
    strict: bool = False
    drop_optimizer: bool = False
    allow_partial: bool = False
    sanitize: bool = False  # write pickled objects as plain data (weights_only-loadable)

    def check(self) -> None:
        if self.to not in (None, "sequential", "named"):
            raise UsageError(f"--to must be sequential or named, not {self.to!r}")
        if (self.to is None) != (self.layout is None):
            raise UsageError("--to and --layout go together", hint="--to sequential --layout layout.toml")
        if sum(x is not None for x in (self.to, self.like, self.model)) > 1:
            raise UsageError("use one of --to, --like and --model")


@dataclass
class RemapResult:
    """What a remap did (or, in a dry run, would do)."""

    input: Path
    layout: str
    source_section: str
    plan: RemapPlan
    findings: list[Finding]
    coverage: Coverage | None = None
    sections: list[SectionChange] = field(default_factory=list)
    optimizers: list[OptimizerRemap] = field(default_factory=list)
    output: Any = None  # WriteResult when written
    dry_run: bool = False
    decisions: list[Decision] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        """A target was given and the result would not load into it strictly: the run failed."""
        return self.coverage is not None and not self.coverage.loads_strict

    def verdict(self) -> str | None:
        """The closing line of a partial result: what failed and whether a file was written."""
        if not self.partial or self.coverage is None:
            return None
        line = _coverage_line(self.coverage)
        if self.output is not None:
            return f"{line}; wrote the partial file anyway (--allow-partial)"
        return f"{line}; {'dry run' if self.dry_run else 'nothing written'} (--allow-partial writes it anyway)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": 1, "input": str(self.input), "layout": self.layout,
                               "section": self.source_section, "dry_run": self.dry_run}
        out.update(self.plan.to_dict())
        out["findings"] = [f.to_dict() for f in self.findings]
        out["coverage"] = self.coverage.to_dict() if self.coverage is not None else None
        out["alignment"] = [d.to_dict() for d in self.decisions]
        out["partial"] = self.partial
        out["sections"] = [s.to_dict() for s in self.sections]
        out["optimizer"] = [o.to_dict() for o in self.optimizers]
        out["output"] = self.output.to_dict() if self.output is not None else None
        return out


def build_rules(opts: RemapOptions) -> list[Rule]:
    """The explicit rules, in the documented order (presets first, then prefixes, maps, the rules file)."""
    rules: list[Rule] = []
    for name in opts.presets:
        rules += preset(name, None)
    rules += [StripPrefix(prefix=p.strip(".")) for p in opts.strip_prefix]
    rules += [AddPrefix(prefix=p.strip(".")) for p in opts.add_prefix]
    mapped = parse_map(opts.maps)
    if mapped is not None:
        rules.append(mapped)
    if opts.rules_file is not None:
        rules += load_rules(opts.rules_file)
    return rules


def _derived(opts: RemapOptions, base: RemapPlan, sd_meta: dict[str, Any] | None,
             shapes: dict[str, tuple[int, ...]]) -> tuple[list[Rule], Target | None, Alignment | None]:
    """Rules from a layout or an alignment, on the keys as the explicit rules left them."""
    after = {r.dst: shapes[r.src] for r in base.mapping}
    if opts.to is not None and opts.layout is not None:
        layout = load_layout(opts.layout)
        if opts.to == "sequential":
            return to_sequential(layout, after, known_modules=sd_meta or ()), None, None
        return to_named(layout, after), None, None
    if opts.like is None and opts.model is None:
        return [], None, None
    target = target_from_checkpoint(opts.like) if opts.like is not None else target_from_model(opts.model or "")
    alignment = align(after, target)
    return alignment.rules(list(after)), target, alignment


_NOT_REWRITABLE = ("torch-export", "peft", "diffusers")


def _holds_safetensors(ckpt: Checkpoint) -> bool:
    """A safetensors file or a set of safetensors shards: the output stays safetensors, not a pickle."""
    if ckpt.format == "safetensors":
        return True
    shards = ckpt.members.get("shards") if ckpt.format == "sharded" else None
    return bool(shards) and all(str(s).lower().endswith(".safetensors") for s in shards)


def _output_format(ckpt: Checkpoint, output: Path | None, findings: list[Finding]) -> str:
    if ckpt.format == "dcp" and output is not None and output.suffix.lower() in ("", ".dcp"):
        return "dcp"
    fmt = "safetensors" if _holds_safetensors(ckpt) else "torch"
    if output is not None and (output.suffix.lower() == ".safetensors") != (fmt == "safetensors"):
        shown = ckpt.format if ckpt.format == fmt else f"{ckpt.format}, written as one {fmt} file"
        raise UsageError(f"remap writes the input's format ({shown}); {output.name} names another",
                         hint="name the output like the input, or change format with ckpttool convert")
    if ckpt.format in ("torch-legacy", "torchscript"):
        findings.append(Finding("remap.format", "info", f"the input is {ckpt.format}; the output is a torch "
                                "zip archive (what torch.save writes today)"))
    return fmt


def remap(path: Path, opts: RemapOptions, output: Path | None = None, *, dry_run: bool = False,
          force: bool = False, progress: ProgressSink | None = None) -> RemapResult:
    """Remap the checkpoint at ``path`` as ``opts`` say and write it to ``output`` (unless ``dry_run``).

    ``progress`` is told the tensor bytes to write and read back, then each chunk of both passes.

    Raises:
        UsageError: contradicting options, a bad rules or layout file, layout names the input lacks.
        RemapConflict: collisions, or (``strict``) ambiguities, leftovers and missing target keys.
        OutputRefused: ``output`` exists (without ``force``) or is the input.
    """
    from ckpttool.io import open_checkpoint

    opts.check()
    if output is None and not dry_run:
        raise UsageError("-o OUTPUT is required (or --dry-run to only show the plan)")
    if output is not None and not dry_run and not Path(output).is_dir():  # a folder: the DCP writer checks it
        from ckpttool.io.write.atomic import check_target

        check_target(Path(output), [Path(path)], force)
    rules = build_rules(opts)
    ckpt = open_checkpoint(path)
    kind, sd = primary_state_dict(ckpt)
    findings: list[Finding] = []
    fmt = _output_format(ckpt, output, findings)
    shapes = {k: tuple(t.shape) for k, t in sd.items()}
    base = plan(sd, rules)
    base.check()
    meta = [k for k in (sd.version_metadata or {}) if isinstance(k, str)]
    derived, target, alignment = _derived(opts, base, dict.fromkeys(meta), shapes)
    rules += derived
    final = plan(sd, rules)
    final.check()
    findings += (alignment.findings if alignment is not None else []) + _plan_findings(final)
    cov = coverage({r.dst: shapes[r.src] for r in final.mapping}, target) if target is not None else None
    if cov is not None and not cov.loads_strict:
        findings.append(Finding("remap.coverage", "warn", _coverage_line(cov), where=kind))
    order = list(target.shapes) if target is not None else None
    applied: Applied = apply_rules(ckpt, rules, final, new_order=order, drop_optimizer=opts.drop_optimizer)
    findings += applied.findings
    _enforce_strict(opts, findings)
    result = RemapResult(Path(path), ckpt.layout, kind, final, findings, cov, applied.sections,
                         applied.optimizers, dry_run=dry_run,
                         decisions=alignment.decisions if alignment is not None else [])
    write = not dry_run and output is not None and (opts.allow_partial or not result.partial)
    if write and fmt == "dcp":
        result.output = _write_dcp(ckpt, applied.tree, Path(output), Path(path), force, progress)
    elif write:
        from ckpttool.io.write.checkpoint import write_checkpoint

        if ckpt.format in _NOT_REWRITABLE:  # a torch file of their tree would pass for the original
            raise UsageError(f"remap cannot write a {ckpt.format} input back in its own format",
                             hint="convert its weights first (ckpttool convert IN -o weights.safetensors) "
                                  "and remap that; --dry-run shows the mapping")

        meta_st = ckpt.members.get("__metadata__") if ckpt.format == "safetensors" else None
        sanitizer = Sanitizer() if opts.sanitize and fmt != "safetensors" else None
        result.output = write_checkpoint(applied.tree, Path(output), inputs=[Path(path)], force=force, fmt=fmt,
                                         metadata=dict(meta_st) if isinstance(meta_st, dict) else None,
                                         transform=sanitizer, progress=progress)
        if sanitizer is not None and sanitizer.changes:
            shown = ", ".join(f"{c.path} ({c.was} → {c.now})" for c in sanitizer.changes[:4])
            result.findings.append(Finding("remap.sanitized", "info", f"--sanitize wrote {len(sanitizer.changes)} "
                                           f"pickled object(s) as plain data: {shown}"
                                           + (" …" if len(sanitizer.changes) > 4 else "")))
    return result


def _write_dcp(ckpt: Checkpoint, tree: Any, output: Path, path: Path, force: bool,
               progress: ProgressSink | None = None) -> Any:
    """A DCP folder to a DCP folder: new ``.metadata``, the input's data files linked, changed values rewritten."""
    from ckpttool.io.write.checkpoint import WriteResult
    from ckpttool.io.write.dcp import write_dcp_folder

    written = write_dcp_folder(tree, output, inputs=[path], force=force, link_from=ckpt.members.get("dcp"),
                               progress=progress)
    return WriteResult(output, "", "dcp", written.tensors, written.nbytes)


def _plan_findings(p: RemapPlan) -> list[Finding]:
    out = []
    layout_drops = [k for k, why in p.dropped if not why.startswith("align:")]
    if layout_drops:
        out.append(Finding("remap.dropped", "warn", f"dropped {len(layout_drops)} key(s) as the rules say: "
                           f"{', '.join(layout_drops[:8])}{' ...' if len(layout_drops) > 8 else ''}", where="model"))
    out += [Finding("remap.rule-unused", "info", f"rule matched no key: {label}") for label in p.unmatched_rules]
    return out


def _coverage_line(cov: Coverage) -> str:
    parts = [f"{len(cov.missing)} missing", f"{len(cov.unexpected)} unexpected",
             f"{len(cov.shape_mismatched)} shape-mismatched"]
    return f"load_state_dict(strict=True) into {cov.target} would fail: " + ", ".join(parts)


def _enforce_strict(opts: RemapOptions, findings: list[Finding]) -> None:
    if not opts.strict:
        return
    bad = [f for f in findings if f.code in (*STRICT_CODES, "remap.coverage")]
    if bad:
        raise RemapConflict(f"--strict: {bad[0].message}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""),
                            hint=bad[0].hint)
