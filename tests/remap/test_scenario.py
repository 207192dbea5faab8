"""The reference scenario end to end: Model1's weights and training checkpoint moved to Model2's keys.

torch is the oracle: Model2 loads the output strictly, computes what Model1 computed, and its
optimizer, resumed from the remapped state, takes the same step Model1's takes.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own idiom

from ckpttool.cli import main
from fixtures.reference_models import Model1, Model2
from tests.conftest import FIXTURES, run_cli
from tests.oracle import torch_load

LAYOUT = FIXTURES / "model1_to_model2.toml"
PAIRS = {"conv1": "backbone.0", "conv2": "backbone.3", "fc1": "fc1", "fc5": "fc5", "fc3": "fc3"}
HOW = {
    "layout": ["--to", "sequential", "--layout", str(LAYOUT)],
    "like": ["--like", str(FIXTURES / "model2_state_dict.pt")],
    "model": ["--model", "fixtures.reference_models:Model2"],
}


def _remap(src, out, how, *extra) -> int:
    return main(["remap", str(src), "-o", str(out), *HOW[how], *extra])


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _batch():
    g = torch.Generator().manual_seed(7)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)


@pytest.mark.parametrize("how", sorted(HOW))
def test_state_dict_becomes_model2(tmp_path, how):
    out = tmp_path / "m2.pt"
    assert _remap(FIXTURES / "model1_state_dict.pt", out, how) == 0
    new = _load(out)
    m2 = Model2()
    m2.load_state_dict(new, strict=True)
    ref = _load(FIXTURES / "model2_state_dict.pt")
    assert list(new) == list(ref)
    assert all(torch.equal(new[k], ref[k]) for k in ref)  # bit-identical to the fixture made by torch
    m1 = Model1()
    m1.load_state_dict(_load(FIXTURES / "model1_state_dict.pt"))
    x, _ = _batch()
    with torch.no_grad():
        assert torch.allclose(m1(x), m2(x))


def _sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.937, nesterov=True)


def _step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("how", ["layout", "like"])
def test_training_checkpoint_resumes_in_model2(tmp_path, how):
    out = tmp_path / "m2_train.pt"
    assert _remap(FIXTURES / "model1_train.pt", out, how) == 0
    orig, new = torch_load(FIXTURES / "model1_train.pt"), _load(out)
    assert set(new) == set(orig)  # every entry of the training dict kept
    for key in ("epoch", "updates", "best_fitness", "opt", "scheduler", "scaler"):
        assert new[key] == orig[key], key
    assert set(new["ema"]) == set(Model2().state_dict())

    m1, m2 = Model1(), Model2()
    m1.load_state_dict({k: v.float() for k, v in orig["model"].state_dict().items()})
    m2.load_state_dict({k: v.float() for k, v in new["model"].items()}, strict=True)
    x, y = _batch()
    with torch.no_grad():
        assert torch.allclose(m1(x), m2(x))

    o1, o2 = _sgd(m1.parameters()), _sgd(m2.parameters())
    o1.load_state_dict(orig["optimizer"])
    o2.load_state_dict(new["optimizer"])  # group sizes fit Model2
    for old, mod in PAIRS.items():  # each parameter got its own momentum back
        for leaf in ("weight", "bias"):
            p1 = m1.get_parameter(f"{old}.{leaf}")
            p2 = m2.get_parameter(f"{mod}.{leaf}")
            assert torch.equal(o1.state[p1]["momentum_buffer"], o2.state[p2]["momentum_buffer"])
    _step(m1, o1, x, y)
    _step(m2, o2, x, y)
    sd1, sd2 = m1.state_dict(), m2.state_dict()
    for old, mod in PAIRS.items():
        for leaf in ("weight", "bias"):
            assert torch.allclose(sd1[f"{old}.{leaf}"], sd2[f"{mod}.{leaf}"], rtol=0, atol=1e-7)


def test_order_settles_conv1_and_says_why(capsys):
    assert main(["remap", str(FIXTURES / "model1_state_dict.pt"), "--like", str(FIXTURES / "model2_state_dict.pt"),
                 "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1
    (amb,) = [f for f in doc["findings"] if f["code"] == "remap.ambiguous"]
    assert "conv1, conv_a all fit backbone.0" in amb["message"]
    assert "chose conv1 -> backbone.0: kept module order" in amb["message"]
    assert "dropped conv_a" in amb["message"] and "--map" in amb["hint"]
    moved = {m["from"]: m for m in doc["mapping"]}
    assert moved["conv1.weight"]["to"] == "backbone.0.weight"
    assert moved["conv1.weight"]["reason"].startswith("align: kept module order")
    assert doc["dropped"] == ["conv_a.weight", "conv_a.bias"]
    assert doc["dropped_reasons"]["conv_a.bias"].startswith("align: out of module order")
    assert doc["alignment"] == [{"candidates": ["conv1", "conv_a"], "targets": ["backbone.0"],
                                 "chosen": [{"from": "conv1", "to": "backbone.0", "why": "kept module order"}],
                                 "dropped": [{"module": "conv_a", "why": "out of module order"}], "undecided": []}]
    assert doc["coverage"]["loads_strict"] is True and doc["partial"] is False


def test_dry_run_table_shows_the_reason():
    proc = run_cli("remap", str(FIXTURES / "model1_state_dict.pt"), "--like", str(FIXTURES / "model2_state_dict.pt"),
                   "--dry-run")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("conv1.weight"))
    assert "backbone.0.weight" in row and "kept module order" in row
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("conv_a.weight"))
    assert "dropped" in row and "out of module order" in row


def test_strict_turns_the_order_decision_into_an_error(tmp_path, capsys):
    out = tmp_path / "m2.pt"
    rc = main(["remap", str(FIXTURES / "model1_state_dict.pt"), "-o", str(out),
               "--like", str(FIXTURES / "model2_state_dict.pt"), "--strict"])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "remap-conflict" in err and "conv_a" in err and "kept module order" in err and "Traceback" not in err


def test_map_overrides_the_order_decision(tmp_path, capsys):
    out = tmp_path / "m2.pt"
    assert main(["remap", str(FIXTURES / "model1_state_dict.pt"), "-o", str(out), "--like",
                 str(FIXTURES / "model2_state_dict.pt"), "--map", "conv_a=backbone.0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert not any(f["code"] == "remap.ambiguous" for f in doc["findings"])
    assert doc["dropped"] == ["conv1.weight", "conv1.bias"]
    new, m1 = _load(out), _load(FIXTURES / "model1_state_dict.pt")
    Model2().load_state_dict(new, strict=True)
    assert torch.equal(new["backbone.0.weight"], m1["conv_a.weight"])
    assert not torch.equal(new["backbone.0.weight"], m1["conv1.weight"])


def test_settled_mapping_json_drops_conv_a_with_a_finding(capsys):
    main(["remap", str(FIXTURES / "model1_state_dict.pt"), *HOW["like"], "--map", "conv1=backbone.0",
          "--dry-run", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["dropped"] == ["conv_a.weight", "conv_a.bias"]
    assert any(f["code"] == "remap.leftover" and "conv_a" in f["message"] for f in doc["findings"])
    assert not any(f["code"] == "remap.ambiguous" for f in doc["findings"])
    assert doc["coverage"]["loads_strict"] is True
    assert {"from": "conv2.weight", "to": "backbone.3.weight", "reason": "align: unique shape signature"} \
        in doc["mapping"]
    assert doc["output"] is None and doc["dry_run"] is True


def test_layout_drop_is_a_finding(capsys):
    main(["remap", str(FIXTURES / "model1_state_dict.pt"), *HOW["layout"], "--dry-run", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["dropped"] == ["conv_a.weight", "conv_a.bias"]
    assert any(f["code"] == "remap.dropped" and "conv_a.weight" in f["message"] for f in doc["findings"])
    assert {"from": "conv2.bias", "to": "backbone.3.bias", "reason": "layout backbone[3]"} in doc["mapping"]


def test_back_to_named_matches_model1_without_conv_a(tmp_path):
    out = tmp_path / "m1.pt"
    assert main(["remap", str(FIXTURES / "model2_state_dict.pt"), "-o", str(out),
                 "--to", "named", "--layout", str(LAYOUT)]) == 0
    back, m1 = _load(out), _load(FIXTURES / "model1_state_dict.pt")
    assert list(back) == [k for k in m1 if not k.startswith("conv_a.")]
    assert all(torch.equal(back[k], m1[k]) for k in back)


def _without_fc3(tmp_path, how: str):
    """Model1's weights with fc3 left out (how="drop") or replaced by a 5-class head (how="shape")."""
    sd = _load(FIXTURES / "model1_state_dict.pt")
    sd = {k: v for k, v in sd.items() if not k.startswith("fc3.")}
    if how == "shape":
        head = torch.nn.Linear(84, 5)
        sd.update({"fc3.weight": head.weight.detach(), "fc3.bias": head.bias.detach()})
    src = tmp_path / f"model1_{how}.pt"
    torch.save(sd, src)
    return src, sd


@pytest.mark.parametrize("how", ["drop", "shape"])
@pytest.mark.parametrize("target", ["like", "model"])
def test_partial_result_fails_and_is_not_written(tmp_path, capsys, how, target):
    src, _ = _without_fc3(tmp_path, how)
    out = tmp_path / "m2.pt"
    assert _remap(src, out, target) == 1
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert "load_state_dict(strict=True)" in last and "would fail: 2 missing" in last
    assert "nothing written" in last and "--allow-partial" in last


def test_partial_dry_run_exits_1_and_json_says_partial(tmp_path, capsys):
    src, _ = _without_fc3(tmp_path, "drop")
    assert main(["remap", str(src), *HOW["like"], "--dry-run", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["partial"] is True and doc["output"] is None
    assert doc["coverage"]["missing"] == ["fc3.weight", "fc3.bias"]


def test_allow_partial_writes_what_torch_reports_as_missing(tmp_path, capsys):
    src, sd = _without_fc3(tmp_path, "drop")
    out = tmp_path / "m2.pt"
    assert _remap(src, out, "like", "--allow-partial") == 1  # written, and still not a success
    assert "wrote the partial file anyway" in capsys.readouterr().out.rstrip().splitlines()[-1]
    new = _load(out)
    with pytest.raises(RuntimeError, match="Missing key"):
        Model2().load_state_dict(new, strict=True)
    keys = Model2().load_state_dict(new, strict=False)
    assert keys.missing_keys == ["fc3.weight", "fc3.bias"] and keys.unexpected_keys == []
    assert torch.equal(new["backbone.0.weight"], sd["conv1.weight"])
    assert torch.equal(new["fc5.bias"], sd["fc5.bias"])


def test_strict_makes_a_partial_result_a_usage_error(tmp_path, capsys):
    src, _ = _without_fc3(tmp_path, "drop")
    out = tmp_path / "m2.pt"
    assert _remap(src, out, "model", "--map", "conv1=backbone.0", "--strict") == 2
    assert not out.exists() and "remap-conflict" in capsys.readouterr().err


def test_where_order_cannot_decide_nothing_is_guessed_and_nothing_written(tmp_path, capsys):
    """conv_a saved right after conv1: both precede conv2, so order cannot tell them apart."""
    sd = _load(FIXTURES / "model1_state_dict.pt")
    keys = ["conv1.weight", "conv1.bias", "conv_a.weight", "conv_a.bias"]
    src = tmp_path / "conv_a_second.pt"
    torch.save({**{k: sd[k] for k in keys}, **{k: v for k, v in sd.items() if k not in keys}}, src)
    out = tmp_path / "m2.pt"
    assert _remap(src, out, "like", "--json") == 1 and not out.exists()
    doc = json.loads(capsys.readouterr().out)
    (amb,) = [f for f in doc["findings"] if f["code"] == "remap.ambiguous"]
    assert "cannot tell conv1, conv_a apart; none of them was moved" in amb["message"]
    assert amb["hint"] == "settle it with --map, e.g. --map conv1=backbone.0"
    assert doc["alignment"][0]["undecided"] == ["conv1", "conv_a"] and doc["partial"] is True
    assert doc["coverage"]["missing"] == ["backbone.0.weight", "backbone.0.bias"]
    assert _remap(src, out, "like", "--map", "conv1=backbone.0") == 0
    Model2().load_state_dict(_load(out), strict=True)
