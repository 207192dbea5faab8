"""convert: round trips, aliases, casts, sections, sanitising, sharding; torch is the oracle."""

from __future__ import annotations

import collections
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import ckpttool
from ckpttool.cli import main
from ckpttool.errors import UnsafeContent, UsageError
from ckpttool.io.formats.sharded import parse_size
from ckpttool.ops.convert import ConvertOptions, convert

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


class Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(11, 6)
        self.bn = torch.nn.BatchNorm1d(6)
        self.head = torch.nn.Linear(6, 11, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("half_buf", torch.randn(3).half())


def _model_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    sd = Tied().state_dict()
    path = tmp_path / "tied.pt"
    torch.save(sd, path)
    return path, sd


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_pt_to_safetensors_to_pt_is_bit_identical_with_ties(tmp_path: Path) -> None:
    src, sd = _model_file(tmp_path)
    st = tmp_path / "m.safetensors"
    r1 = convert(src, st)
    assert r1.aliases == {"head.weight": "embed.weight"}
    loaded = load_file(st)
    assert "head.weight" not in loaded and set(loaded) == set(sd) - {"head.weight"}
    with safe_open(st, "pt") as f:
        assert f.metadata()["format"] == "pt"
    back = tmp_path / "back.pt"
    convert(st, back)
    out = torch.load(back, weights_only=True, mmap=True)
    assert list(out) == list(sd)
    for key, value in sd.items():
        assert _same(out[key], value), key
    assert out["head.weight"].untyped_storage().data_ptr() == out["embed.weight"].untyped_storage().data_ptr()


def test_training_checkpoint_to_safetensors_keeps_metadata(tmp_path: Path) -> None:
    src = FIXTURES / "generic_train.pt"
    out = tmp_path / "g.safetensors"
    result = convert(src, out)
    ref = torch.load(src, weights_only=True)
    loaded = load_file(out)
    assert set(loaded) == set(ref["model_state_dict"])
    for key, value in ref["model_state_dict"].items():
        assert _same(loaded[key], value)
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and json.loads(meta["epoch"]) == ref["epoch"]
    assert json.loads(meta["loss"]) == pytest.approx(ref["loss"])
    assert "optimizer" in result.dropped


@pytest.mark.parametrize("how", [ConvertOptions(section="ema"), ConvertOptions(ema=True)])
def test_ema_section(tmp_path: Path, how: ConvertOptions) -> None:
    src = FIXTURES / "generic_train.pt"
    out = tmp_path / "ema.safetensors"
    assert convert(src, out, how).content == "ema"
    ref = torch.load(src, weights_only=True)["model_ema"]
    loaded = load_file(out)
    for key in ("conv.weight", "fc.bias", "bn.running_mean"):
        assert _same(loaded[key], ref[key])


@pytest.mark.parametrize(("flag", "dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_dtype_casts_floating_only(tmp_path: Path, flag: str, dtype: torch.dtype) -> None:
    src, sd = _model_file(tmp_path)
    out = tmp_path / "c.pt"
    result = convert(src, out, ConvertOptions(dtype=flag))
    got = torch.load(out, weights_only=True)
    for key, value in sd.items():
        want = value.to(dtype) if value.is_floating_point() else value
        assert _same(got[key], want), key
    assert got["bn.num_batches_tracked"].dtype == torch.int64
    assert result.cast == len([v for v in sd.values() if v.is_floating_point() and v.dtype != dtype])


def test_sanitize_makes_a_yolo_checkpoint_weights_only_loadable(tmp_path: Path) -> None:
    src = FIXTURES / "model1_train.pt"
    convert(src, tmp_path / "x.pt")  # without --sanitize the pickled model stays a pickled model
    with pytest.raises(pickle.UnpicklingError, match=r"yolo_models\.Model1"):
        torch.load(tmp_path / "x.pt", weights_only=True)
    assert ckpttool.open(tmp_path / "x.pt").tree["model"].qualname == "yolo_models.Model1"
    out = tmp_path / "clean.pt"
    result = convert(src, out, ConvertOptions(sanitize=True))
    assert {c.path for c in result.changes} >= {"model", "ema"}
    clean = torch.load(out, weights_only=True)
    ckpt = ckpttool.open(src)
    model = ckpt.state_dict("model")
    assert list(clean["model"]) == list(model)
    for key, ref in model.items():
        assert _same(clean["model"][key], ref.to_torch())
    assert clean["epoch"] == ckpt.meta["epoch"]
    assert torch.equal(clean["optimizer"]["state"][0]["momentum_buffer"],
                       ckpt.section("optimizer").value["state"][0]["momentum_buffer"].to_torch())


def test_strip_optimizer_writes_the_release_state_dict(tmp_path: Path) -> None:
    out = tmp_path / "rel.pt"
    convert(FIXTURES / "generic_train.pt", out, ConvertOptions(strip_optimizer=True))
    ref = torch.load(FIXTURES / "generic_train.pt", weights_only=True)["model_state_dict"]
    got = torch.load(out, weights_only=True)
    assert list(got) == list(ref) and all(_same(got[k], ref[k]) for k in ref)


def test_sharded_round_trip(tmp_path: Path) -> None:
    sd = {f"layer{i}.weight": torch.randn(64, 64) for i in range(5)}
    sd["count"] = torch.tensor(3)
    src = tmp_path / "big.pt"
    torch.save(sd, src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = convert(src, out_dir, ConvertOptions(max_shard_size=parse_size("40KB")))
    assert result.output_format == "sharded" and len(result.shards) >= 3
    index = json.loads((out_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(sd)
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in sd.values())
    for shard in result.shards:
        assert load_file(shard.path)
    for path in (out_dir, out_dir / "model.safetensors.index.json"):
        ckpt = ckpttool.open(path)
        assert ckpt.format == "sharded" and set(ckpt.state_dict("model")) == set(sd)
    back = tmp_path / "back.pt"
    convert(out_dir, back)
    got = torch.load(back, weights_only=True)
    assert list(got) == list(sd) and all(_same(got[k], sd[k]) for k in sd)


def test_bin_index_read_as_one_checkpoint(tmp_path: Path) -> None:
    parts = [{"a.weight": torch.randn(3)}, {"b.weight": torch.randn(4), "b.bias": torch.randn(2)}]
    weight_map = {}
    for i, part in enumerate(parts, 1):
        name = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save(part, tmp_path / name)
        weight_map.update(dict.fromkeys(part, name))
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ckpt = ckpttool.open(tmp_path)
    assert ckpt.format == "sharded" and len(ckpt.state_dict()) == 3
    convert(tmp_path, tmp_path / "one.safetensors")
    got = load_file(tmp_path / "one.safetensors")
    for part in parts:
        assert all(_same(got[k], v) for k, v in part.items())


def test_index_naming_a_file_outside_its_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.index.json").write_text(json.dumps({"weight_map": {"a": "../evil.safetensors"}}))
    assert main(["convert", str(tmp_path / "x.index.json"), "-o", str(tmp_path / "o.pt")]) == 2


def test_options_that_contradict_are_usage_errors(tmp_path: Path) -> None:
    src, _ = _model_file(tmp_path)
    with pytest.raises(UsageError):
        convert(src, tmp_path / "x.pt", ConvertOptions(max_shard_size=10))
    with pytest.raises(UsageError):
        convert(src, tmp_path / "x.pt", ConvertOptions(ema=True, section="model"))


def test_cli_convert_refusals_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = _model_file(tmp_path)
    out = tmp_path / "m.safetensors"
    assert main(["convert", str(src), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["format"] == "safetensors" and len(doc["sha256"]) == 64
    before = out.read_bytes()
    assert main(["convert", str(src), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["convert", str(src), "-o", str(out), "--force", "--dtype", "fp16"]) == 0
    assert "sha256" in capsys.readouterr().out
    assert main(["convert", str(src), "-o", str(src), "--force"]) == 2
    assert "one of the inputs" in capsys.readouterr().err
    assert torch.load(src, weights_only=True)


def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (FIXTURES / "truncated.pt", tmp_path / "missing.pt"):
        assert main(["convert", str(bad), "-o", str(tmp_path / "o.safetensors")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.safetensors").exists()


def test_cli_hash_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, _ = _model_file(tmp_path)
    assert main(["convert", str(src), "-o", str(tmp_path / "rel.pt"), "--hash-name", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert Path(doc["output"]).name == f"rel-{doc['sha256'][:8]}.pt" and Path(doc["output"]).exists()


def test_interrupted_convert_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = _model_file(tmp_path)
    from ckpttool.model import TensorRef

    def boom(*_: object) -> None:
        raise KeyboardInterrupt

    from ckpttool.io import buffers

    monkeypatch.setattr(TensorRef, "chunks", boom)
    monkeypatch.setattr(buffers, "read_into", boom)  # wherever the tensor bytes are read
    with pytest.raises(KeyboardInterrupt):
        convert(src, tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tied.pt"]


def test_ordered_dict_metadata_survives(tmp_path: Path) -> None:
    sd = collections.OrderedDict(w=torch.ones(2))
    sd._metadata = collections.OrderedDict({"": {"version": 2}})
    src = tmp_path / "s.pt"
    torch.save(sd, src)
    convert(src, tmp_path / "o.pt", ConvertOptions(section="model"))
    assert torch.load(tmp_path / "o.pt", weights_only=True)._metadata == {"": {"version": 2}}


def test_every_dtype_round_trips_through_torch_output(tmp_path: Path) -> None:
    src = FIXTURES / "dtypes_zoo.pt"
    out = tmp_path / "zoo.pt"
    convert(src, out, ConvertOptions(section="model"))
    a = torch.load(src, weights_only=True)
    b = torch.load(out, weights_only=True, mmap=True)
    assert list(a) == list(b)
    for key, value in a.items():
        assert b[key].dtype == value.dtype and b[key].shape == value.shape and b[key].stride() == value.stride()
        same = torch.equal(b[key].reshape(-1).view(torch.uint8), value.reshape(-1).view(torch.uint8))
        assert same or not value.numel(), key
    assert b["shared_slice"].untyped_storage().data_ptr() == b["shared_base"].untyped_storage().data_ptr()


def test_dtypes_safetensors_lacks_are_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(FIXTURES / "dtypes_zoo.pt"), "-o", str(tmp_path / "zoo.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "complex32" in err and "--dtype" in err
    assert not list(tmp_path.iterdir())


def test_cuda_tagged_tensors_are_written_for_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "cpu.pt"
    convert(FIXTURES / "cuda_tagged.pt", out)
    got = torch.load(out, weights_only=True)
    assert all(t.device.type == "cpu" for t in got.values())


def test_malicious_payload_is_never_run_and_sanitize_removes_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = FIXTURES / "malicious_reduce.pt"
    with pytest.raises(UnsafeContent, match=r"posix\.system"):
        convert(src, tmp_path / "x.pt")
    result = convert(src, tmp_path / "clean.pt", ConvertOptions(sanitize=True))
    assert [(c.path, c.was) for c in result.changes] == [("payload", "posix.system")]
    clean = torch.load(tmp_path / "clean.pt", weights_only=True)
    assert clean["payload"] is None and set(clean["state_dict"]) == {"fc.weight", "fc.bias"}
    convert(src, tmp_path / "m.safetensors")
    assert not (tmp_path / "ckpttool_marker_pwned").exists()


def test_views_of_one_storage_are_stored_once_and_restored(tmp_path: Path) -> None:
    qkv = torch.randn(12, 4)
    sd = {"qkv.weight": qkv, "q": qkv[0:4], "k": qkv[4:8], "k_again": qkv[4:8], "t": qkv.t(), "own": torch.ones(3)}
    src = tmp_path / "views.pt"
    torch.save(sd, src)
    st = tmp_path / "views.safetensors"
    result = convert(src, st)
    assert result.views == {"q": "qkv.weight", "k": "qkv.weight", "t": "qkv.weight"}
    assert result.aliases == {"k_again": "k"}
    assert set(load_file(st)) == {"qkv.weight", "own"}
    back = tmp_path / "back.pt"
    convert(st, back)
    got = torch.load(back, weights_only=True)
    assert list(got) == list(sd)
    for key, value in sd.items():
        assert torch.equal(got[key], value) and got[key].stride() == value.stride(), key
    ptr = got["qkv.weight"].untyped_storage().data_ptr()
    assert all(got[k].untyped_storage().data_ptr() == ptr for k in ("q", "k", "k_again", "t"))


def test_a_view_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"w": torch.ones(4)}, bad, metadata={"ckpttool.views": json.dumps({"v": ["w", 2, [5], [1]]})})
    assert main(["convert", str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()


def test_sharded_output_folder_is_created(tmp_path: Path) -> None:
    src, sd = _model_file(tmp_path)
    result = main(["convert", str(src), "-o", str(tmp_path / "new"), "--max-shard-size", "200B"])
    assert result == 0
    assert (tmp_path / "new" / "model.safetensors.index.json").is_file()
    got = ckpttool.open(tmp_path / "new").state_dict()
    assert list(got) == list(sd) and got["head.weight"].storage is got["embed.weight"].storage


def test_sharded_output_named_by_its_index_file_makes_its_folder(tmp_path: Path) -> None:
    """``-o out/model.safetensors`` (the --help example) works when ``out/`` does not exist yet."""
    src, sd = _model_file(tmp_path)
    out = tmp_path / "out" / "model.safetensors"
    assert main(["convert", str(src), "-o", str(out), "--max-shard-size", "200B"]) == 0
    loaded: dict[str, torch.Tensor] = {}
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    for shard in sorted(set(index["weight_map"].values())):
        loaded.update(load_file(tmp_path / "out" / shard))
    assert set(index["weight_map"]) == set(sd) - {"head.weight"}  # tied to embed.weight: stored once
    assert all(torch.equal(loaded[k], sd[k]) for k in loaded) and len(loaded) == len(sd) - 1


def test_a_failed_sharded_write_leaves_no_folder_it_made(tmp_path: Path) -> None:
    result = main(["convert", str(FIXTURES / "truncated.pt"), "-o", str(tmp_path / "out" / "model.safetensors"),
                   "--max-shard-size", "200B"])
    assert result == 2 and not (tmp_path / "out").exists()
