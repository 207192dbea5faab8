"""Terminal rendering of an ``InspectReport``: a header, then each section as a module tree."""

from __future__ import annotations

from typing import Any

from ckpttool.ops.inspect import InspectReport, SectionReport
from ckpttool.report.text import findings_table, human_bytes, human_count

__all__ = ["render_inspect", "render_keys"]

_QUIET_GROUP_KEYS = ("params", "foreach", "differentiable", "fused", "capturable")


def _header(report: InspectReport) -> Any:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("file", f"{report.path}  ({human_bytes(report.file_size)})")
    table.add_row("format", f"{report.format}    layout: {report.layout}")
    table.add_row("tensors", f"{report.tensor_count} tensors, {human_count(report.parameter_count)} "
                  "parameters in the model section" if report.sections.get("model") else
                  f"{report.tensor_count} tensors, {human_count(report.parameter_count)} elements")
    by_dtype = ", ".join(f"{k} {human_bytes(v)}" for k, v in sorted(report.bytes_by_dtype.items()))
    table.add_row("bytes", by_dtype or "-")
    if report.locations and report.locations != ["cpu"]:
        table.add_row("devices", ", ".join(report.locations) + " (read on the CPU)")
    if report.dcp is not None:
        d = report.dcp
        split = ", ".join(f"{k}: {v}" for k, v in sorted(d["split"].items()))
        table.add_row("ranks", f"{len(d['ranks'])} writers, {d['files']} data files, {d['chunk_entries']} chunk "
                      f"entries, {d['values']} other values; tensors split along {split or '-'}")
    table.add_row("sections", ", ".join(f"{k} ← {s.source or '<root>'}" for k, s in report.sections.items()
                                         if k != "meta") or "-")
    for key in ("epoch", "global_step", "best_fitness", "updates", "n_averaged", "step",
                "pytorch-lightning_version", "version", "arch", "date"):
        if key in report.meta:
            table.add_row(key, str(report.meta[key]))
    for key in ("zero_stage", "world_size", "dtype", "tag", "global_steps", "frozen_from_module16"):
        if report.layout == "deepspeed" and key in report.meta:  # a DeepSpeed folder's run facts
            table.add_row(key, str(report.meta[key]))
    adapter = report.meta.get("config") if report.layout == "peft-adapter" else None
    if isinstance(adapter, dict):
        table.add_row("adapter", _adapter_line(adapter))
    classes = [g.name for g in report.globals if g.kind != "data"]
    if classes:
        table.add_row("classes", ", ".join(classes[:10]) + (" …" if len(classes) > 10 else ""))
    return table


def _adapter_line(config: dict[str, Any]) -> str:
    """A PEFT adapter in one line: type, rank, alpha, target modules, base model."""
    targets = config.get("target_modules")
    targets = ", ".join(map(str, targets)) if isinstance(targets, list) else str(targets)
    return (f"{config.get('peft_type', '?')}  r={config.get('r', '?')}  lora_alpha={config.get('lora_alpha', '?')}  "
            f"target_modules: {targets}  base: {config.get('base_model_name_or_path') or '?'}")


def _module_tree(section: SectionReport, depth: int) -> Any:
    """Group tensor keys by module prefix; collapse modules deeper than ``depth``."""
    from rich.tree import Tree

    assert section.tensors is not None
    sd = section.tensors
    title = (f"[bold]{section.kind}[/bold] ← {section.source or '<root>'}: "
             f"{len(sd) + len(sd.composites)} tensors, "
             f"{human_count(sd.numel)} elements, {human_bytes(sd.nbytes)}")
    root = Tree(title)
    nodes: dict[str, tuple[Any, list[int]]] = {"": (root, [0])}
    counts: dict[str, int] = {}
    for key, t in sd.items():
        parts = key.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            counts[prefix] = counts.get(prefix, 0) + t.numel
    hidden: dict[str, int] = {}
    for key, t in sd.items():
        parts = key.split(".")
        parent = ""
        shown = min(len(parts) - 1, depth)
        for i in range(1, shown + 1):
            prefix = ".".join(parts[:i])
            if prefix not in nodes:
                label = f"[cyan]{parts[i - 1]}[/cyan]  [dim]{human_count(counts[prefix])}[/dim]"
                nodes[prefix] = (nodes[parent][0].add(label), [0])
            parent = prefix
        if len(parts) - 1 > depth:  # collapsed: counted on the deepest shown module
            hidden[parent] = hidden.get(parent, 0) + 1
            continue
        leaf = ".".join(parts[shown:])
        kind = sd.kind_of(key)
        extra = "" if kind in (None, "parameter") else f"  [dim]{kind}[/dim]"
        stats = section.stats.get(key)
        stat_text = ""
        if stats and "mean" in stats:
            stat_text = (f"  [dim]min {stats['min']:.4g} max {stats['max']:.4g} mean {stats['mean']:.4g} "
                         f"std {stats['std']:.4g}[/dim]")
        if stats and (stats.get("nan") or stats.get("inf")):
            stat_text += f"  [red]nan {stats.get('nan', 0)} inf {stats.get('inf', 0)}[/red]"
        nodes[parent][0].add(f"{leaf}  {t.dtype} {list(t.shape)}{extra}{stat_text}")
    for prefix, n in hidden.items():
        node = nodes[prefix][0]
        node.label = f"{node.label}  [dim]({n} tensors below; --depth to expand)[/dim]"
    if sd.composites:
        _composite_branch(root, sd)
    return root


def _composite_branch(root: Any, sd: Any) -> None:
    """The entries that are not plain tensors, each with its state and inner tensors."""
    from ckpttool.io.tensor_findings import KIND_WORDS

    branch = root.add(f"[bold]{len(sd.composites)} not plain[/bold] (quantized, sparse, nested, subclasses)")
    for key, entry in sd.composites.items():
        shape = list(entry.shape) if entry.shape is not None else "ragged" if entry.kind == "nested" else "?"
        flag = "" if entry.decoded else "  [yellow]not decoded[/yellow]"
        params = ", ".join(f"{k}={v}" for k, v in entry.params.items()
                           if k not in ("state", "args") and v is not None)
        node = branch.add(f"{key}  {entry.dtype} {shape}  [magenta]{KIND_WORDS.get(entry.kind, entry.kind)}"
                          f"[/magenta]{flag}  [dim]{params}[/dim]")
        for name, part in entry.parts.items():
            node.add(f"[dim]{name}  {part.dtype} {list(part.shape)}  {human_bytes(part.nbytes)}[/dim]")
        if entry.note:
            node.add(f"[dim italic]{entry.note}[/dim italic]")


def _summary_table(section: SectionReport) -> Any:
    from rich.table import Table

    table = Table(title=f"{section.kind} ← {section.source}", title_justify="left", show_header=False,
                  box=None, padding=(0, 2))
    for key, value in section.summary.items():
        if key == "param_groups":
            for i, group in enumerate(value):
                hyper = ", ".join(f"{k}={v}" for k, v in group.items()
                                  if k not in _QUIET_GROUP_KEYS and v not in (None, False))
                table.add_row(f"group {i}", f"{group.get('params')} params; {hyper}")
        else:
            table.add_row(key, str(value))
    return table


def render_inspect(report: InspectReport, *, depth: int = 2) -> list[Any]:
    """The renderables for the default view."""
    out: list[Any] = [_header(report)]
    for section in report.sections.values():
        if section.kind == "meta":
            continue
        out.append("")
        out.append(_module_tree(section, depth) if section.tensors is not None else _summary_table(section))
    if report.findings:
        out.append("")
        out.append(findings_table(report.findings))
    return out


def render_keys(report: InspectReport) -> list[Any]:
    """``--keys``: one line per tensor, ``key  dtype  [shape]  bytes``, as state_dict printing does."""
    from rich.table import Table

    table = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
    for col in ("section", "key", "dtype", "shape", "bytes"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    for section in report.sections.values():
        if section.tensors is None:
            continue
        for key, t in section.tensors.items():
            table.add_row(section.kind, key, t.dtype, str(list(t.shape)), str(t.nbytes))
        for key, entry in section.tensors.composites.items():
            shape = list(entry.shape) if entry.shape is not None else "ragged" if entry.kind == "nested" else "?"
            table.add_row(section.kind, key, f"{entry.dtype} ({entry.kind})", str(shape), str(entry.nbytes))
    return [table]
