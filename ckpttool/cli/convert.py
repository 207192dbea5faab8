"""``ckpttool convert IN -o OUT``."""

from __future__ import annotations

from pathlib import Path

import click

from ckpttool.cli.common import (
    emit_json,
    input_path,
    jobs_option,
    json_option,
    print_renderable,
    quiet_rank,
    resolve_jobs,
)
from ckpttool.cli.progress import progress_bar, progress_option


@click.command("convert")
@click.argument("path", type=input_path())
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Where to write: .safetensors, or .pt/.pth/.ckpt/.bin for torch (a folder with "
                   "--max-shard-size); no extension or .dcp: a torch.distributed.checkpoint folder.")
@click.option("--section", metavar="NAME",
              help="Write this section's state_dict only: model, ema, a pipeline component (unet, vae...), "
                   "or model16 (a DeepSpeed folder's 16-bit module weights).")
@click.option("--ema", is_flag=True, help="Write the EMA weights (under the model's keys).")
@click.option("--dtype", type=click.Choice(["fp16", "bf16", "fp32"], case_sensitive=False),
              help="Cast floating model/EMA tensors; integer buffers and optimizer state are untouched.")
@click.option("--strip-optimizer", is_flag=True, help="Release form: the model (or --ema) state_dict only.")
@click.option("--sanitize", is_flag=True,
              help="Torch output: turn pickled modules, Namespaces and other objects into plain data so "
                   "torch.load(weights_only=True) accepts the file; every change is reported.")
@click.option("--max-shard-size", metavar="SIZE",
              help="Write shards of at most SIZE (e.g. 2GB) with an index: safetensors, or Hugging Face "
                   ".bin shards when OUTPUT is named pytorch_model.bin or pytorch_model.bin.index.json.")
@click.option("--dcp-file-size", metavar="SIZE",
              help="DCP output: tensor bytes per .distcp data file [256MiB]; the files are the units --jobs "
                   "and torchrun ranks write in parallel, and the folder's bytes depend on SIZE only.")
@click.option("--hash-name", is_flag=True, help="Put the first 8 hex digits of the sha256 in the file name.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists (never an input).")
@click.option("--drop", "drop", multiple=True, metavar="PATTERN",
              help="Leave out the state_dict entries matching PATTERN (a glob, or re:REGEX); repeatable. "
                   "Needed for quantized, sparse, DTensor and other tensors the output cannot hold.")
@click.option("--quantized-parts", is_flag=True,
              help="safetensors output: write each quantized tensor KEY as KEY.int_repr plus KEY.scale/"
                   "KEY.zero_point (or KEY.scales/KEY.zero_points), recorded in the ckpttool.quantized metadata.")
@jobs_option
@progress_option
@json_option
def command(path: Path, output: Path, section: str | None, ema: bool, dtype: str | None, strip_optimizer: bool,
            sanitize: bool, max_shard_size: str | None, dcp_file_size: str | None, hash_name: bool, force: bool,
            drop: tuple[str, ...],
            quantized_parts: bool, jobs: int | None, no_progress: bool, as_json: bool) -> int:
    """Convert PATH to OUTPUT: torch ↔ safetensors, sharded, cast, EMA, release or sanitised form.

    The output format follows OUTPUT's extension. safetensors holds one state_dict (the model,
    or --section/--ema); the checkpoint's other plain values go into its metadata as JSON, and tied
    tensors are stored once with their aliases recorded (restored when converting back). Torch
    output keeps the whole checkpoint unless --section/--ema/--strip-optimizer pick one state_dict.
    Writes are streamed, atomic and verified by reading them back; the sha256 is printed.

    \b
    Examples:
      ckpttool convert last.pt -o model.safetensors
      ckpttool convert model.safetensors -o model.pt
      ckpttool convert last.pt -o release.safetensors --ema --dtype fp16 --hash-name
      ckpttool convert last.pt -o clean.pt --sanitize
      ckpttool convert big.pt -o out/model.safetensors --max-shard-size 2GB
      ckpttool convert ds_run/ -o model.safetensors   # DeepSpeed ZeRO folder: fp32 weights
      ckpttool convert big.pt -o out/pytorch_model.bin.index.json --max-shard-size 2GB
      ckpttool convert qmodel.pt -o plain.safetensors --drop '*._packed_params'
      ckpttool convert big.pt -o big_dcp/ --jobs 4        # DCP folder, data files written in parallel
      torchrun --nproc-per-node 4 -m ckpttool convert run_dcp/ -o out/ --max-shard-size 5GB
    Exit status: 0 written, 2 bad input, refused output or bad options.
    """
    from ckpttool.io.formats.sharded import parse_size
    from ckpttool.ops.convert import ConvertOptions, convert

    opts = ConvertOptions(section=section, ema=ema, dtype=dtype, strip_optimizer=strip_optimizer,
                          sanitize=sanitize, max_shard_size=parse_size(max_shard_size) if max_shard_size else None,
                          hash_name=hash_name, force=force, drop=drop, quantized_parts=quantized_parts,
                          jobs=resolve_jobs(jobs),
                          dcp_file_bytes=parse_size(dcp_file_size) if dcp_file_size else None)
    with progress_bar("writing + verifying", no_progress) as bar:
        result = convert(path, output, opts, progress=bar)
    if quiet_rank():
        return 0
    if as_json:
        emit_json(result.to_dict())
    else:
        from ckpttool.report.convert import render_convert

        print_renderable(*render_convert(result))
    return 0
