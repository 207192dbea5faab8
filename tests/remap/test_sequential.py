"""Named <-> Sequential layouts: indices count every layer, nesting works, and the round trip is exact."""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckpttool.errors import UsageError
from ckpttool.ops.remap import RemapOptions, plan, remap
from ckpttool.ops.remap.sequential import parse_layout, to_named, to_sequential


def _layout(text: str):
    import tomllib

    return parse_layout(tomllib.loads(text))


def test_indices_count_parameter_free_layers_and_nesting():
    lay = _layout('[sequential]\nfeatures = ["conv1", "relu", ["layer1.0", "act", "layer1.1"], "pool"]\n'
                  'encoder.head = ["fc"]\n')
    keys = ["conv1.weight", "layer1.0.conv1.weight", "layer1.0.bn.running_mean", "layer1.1.conv1.weight",
            "fc.bias"]
    fwd = plan(keys, to_sequential(lay, keys)).forward
    assert fwd == {"conv1.weight": "features.0.weight", "layer1.0.conv1.weight": "features.2.0.conv1.weight",
                   "layer1.0.bn.running_mean": "features.2.0.bn.running_mean",
                   "layer1.1.conv1.weight": "features.2.2.conv1.weight", "fc.bias": "encoder.head.0.bias"}
    back = plan(list(fwd.values()), to_named(lay, list(fwd.values()))).forward
    assert list(back.values()) == keys


def test_unknown_layout_names_are_errors():
    lay = _layout('[sequential]\nbackbone = ["conv1", "relu", "conv_2"]\n')
    with pytest.raises(UsageError, match=r"conv_2 \(at backbone.2\)"):
        to_sequential(lay, ["conv1.weight", "conv2.weight"])
    lay = _layout('drop = ["nope"]\n[sequential]\nbackbone = ["conv1"]\n')
    with pytest.raises(UsageError, match="nope"):
        to_sequential(lay, ["conv1.weight"])


def test_stateless_names_declared_or_known_from_metadata():
    lay = _layout('stateless = ["squash"]\n[sequential]\nb = ["conv1", "squash", "mystery", "conv2"]\n')
    keys = ["conv1.weight", "conv2.weight"]
    with pytest.raises(UsageError, match="mystery"):
        to_sequential(lay, keys)
    fwd = plan(keys, to_sequential(lay, keys, known_modules=["mystery"])).forward
    assert fwd["conv2.weight"] == "b.3.weight"


def test_to_named_refuses_children_the_layout_does_not_list():
    lay = _layout('[sequential]\nbackbone = ["conv1", "relu"]\n')
    with pytest.raises(UsageError, match=r"backbone\.5\.weight"):
        to_named(lay, ["backbone.0.weight", "backbone.5.weight"])
    with pytest.raises(UsageError, match="no container of the layout") as info:
        to_named(lay, ["conv1.weight"])
    assert "--to sequential" in (info.value.hint or "")


def test_already_sequential_input_gets_a_hint():
    lay = _layout('[sequential]\nbackbone = ["conv1", "relu", "pool", "conv2"]\n')
    with pytest.raises(UsageError) as info:
        to_sequential(lay, ["backbone.0.weight"])
    assert "--to named" in (info.value.hint or "")


@pytest.mark.parametrize("text, match", [
    ("[sequential]\n", "no Sequential container"),
    ('[sequential]\nb = ["a", 3]\n', "layer name or a nested list"),
    ('[sequential]\nb = "a"\n', "must be a list"),
    ('drop = "a"\n[sequential]\nb = ["a"]\n', "drop must be a list"),
    ('junk = 1\n[sequential]\nb = ["a"]\n', "unknown top-level"),
])
def test_bad_layouts(text, match):
    with pytest.raises(UsageError, match=match):
        _layout(text)


# ---- round trip over random module trees -------------------------------------------------------

_NAME = st.from_regex(r"[a-h][a-h0-9_]{0,4}", fullmatch=True).filter(
    lambda s: s not in ("seq", "relu", "pool") and not s.startswith(("act", "drop", "pad")))
_LEAVES = st.lists(st.sampled_from(["weight", "bias", "running_mean", "scale"]), min_size=1, max_size=3, unique=True)


@st.composite
def module_trees(draw):
    """(key list, layout text): random modules with nested children; some moved into a Sequential."""
    names = draw(st.lists(_NAME, min_size=2, max_size=7, unique=True))
    keys: list[str] = []
    for name in names:
        for child in draw(st.lists(st.sampled_from(["", "0", "1", "blk.0", "blk.1"]), min_size=1, max_size=3,
                                   unique=True)):
            base = f"{name}.{child}" if child else name
            keys += [f"{base}.{leaf}" for leaf in draw(_LEAVES)]
    moved = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    entries: list[object] = []
    for name in moved:
        entries += draw(st.lists(st.sampled_from(['"relu"', '"pool"']), max_size=2))
        entries.append(f'["{name}", "relu"]' if draw(st.booleans()) else f'"{name}"')
    return keys, "[sequential]\nseq = [" + ", ".join(map(str, entries)) + "]\n"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(module_trees(), st.randoms(use_true_random=False))
def test_sequential_then_named_is_bit_identical(tree, rnd):
    keys, layout_text = tree
    gen = torch.Generator().manual_seed(rnd.randint(0, 2**31))
    sd = OrderedDict((k, torch.randn(rnd.randint(1, 3), rnd.randint(1, 4), generator=gen)) for k in keys)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        torch.save(sd, d / "named.pt")
        (d / "layout.toml").write_text(layout_text)
        remap(d / "named.pt", RemapOptions(to="sequential", layout=d / "layout.toml"), d / "seq.pt")
        seq = torch.load(d / "seq.pt", weights_only=True)
        assert any(k.startswith("seq.") for k in seq)
        remap(d / "seq.pt", RemapOptions(to="named", layout=d / "layout.toml"), d / "back.pt")
        back = torch.load(d / "back.pt", weights_only=True)
    assert list(back) == list(sd)
    for k in sd:
        assert back[k].dtype == sd[k].dtype and torch.equal(back[k], sd[k])
        assert back[k].numpy().tobytes() == sd[k].numpy().tobytes()
