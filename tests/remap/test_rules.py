"""Rules act on module paths, run in order, and report collisions and rules that matched nothing."""

from __future__ import annotations

import pytest

from ckpttool.errors import RemapConflict, UsageError
from ckpttool.ops.remap import (
    AddPrefix,
    Drop,
    StripPrefix,
    parse_map,
    plan,
    preset,
)
from ckpttool.ops.remap.rules_file import parse_rules

KEYS = ["conv1.weight", "conv1.bias", "conv10.weight", "submodule.conv1.weight", "fc.weight"]


def test_map_is_by_module_path_not_string_prefix():
    p = plan(KEYS, [parse_map(["conv1=backbone.0"])])
    assert p.forward == {"conv1.weight": "backbone.0.weight", "conv1.bias": "backbone.0.bias",
                         "conv10.weight": "conv10.weight", "submodule.conv1.weight": "submodule.conv1.weight",
                         "fc.weight": "fc.weight"}
    assert [r.src for r in p.renamed] == ["conv1.weight", "conv1.bias"]


def test_map_whole_key_and_swap_do_not_chain():
    p = plan(["a.weight", "b.weight"], [parse_map(["a=b", "b=a"])])
    assert p.forward == {"a.weight": "b.weight", "b.weight": "a.weight"}
    assert not p.collisions
    assert plan(["a.weight"], [parse_map(["a.weight=z.w"])]).forward == {"a.weight": "z.w"}


def test_longest_module_path_wins():
    p = plan(["layer.0.w", "layer.1.w"], [parse_map(["layer=stage", "layer.1=extra"])])
    assert p.forward == {"layer.0.w": "stage.0.w", "layer.1.w": "extra.w"}


def test_strip_prefix_only_leading_component():
    keys = ["module.a.weight", "submodule.b.weight", "modules.c.weight"]
    p = plan(keys, [StripPrefix(prefix="module")])
    assert p.forward == {"module.a.weight": "a.weight", "submodule.b.weight": "submodule.b.weight",
                         "modules.c.weight": "modules.c.weight"}


@pytest.mark.parametrize("prefix", ["_orig_mod.module.", "module._orig_mod.", "module.", "_orig_mod.",
                                    "module.module._orig_mod."])
def test_wrappers_preset_strips_any_combination(prefix):
    keys = [prefix + "conv1.weight", prefix + "submodule.weight", prefix + "x.module.weight"]
    p = plan(keys, preset("wrappers", None))
    assert [r.dst for r in p.mapping] == ["conv1.weight", "submodule.weight", "x.module.weight"]


def test_lightning_preset_detects_or_takes_the_attribute():
    keys = ["model.conv.weight", "model.fc.bias"]
    assert [r.dst for r in plan(keys, preset("lightning", None)).mapping] == ["conv.weight", "fc.bias"]
    keys2 = ["net.conv.weight", "loss.weight"]
    assert plan(keys2, preset("lightning:net", None)).forward["net.conv.weight"] == "conv.weight"
    with pytest.raises(UsageError, match=r"lightning:ATTR|LightningModule"):
        plan(keys2, preset("lightning", None))
    with pytest.raises(UsageError, match="unknown preset"):
        preset("keras", None)


def test_rules_run_in_order_and_unmatched_ones_are_reported():
    rules = [StripPrefix(prefix="module"), AddPrefix(prefix="net"), Drop(module="net.head")]
    p = plan(["module.body.w", "module.head.w"], rules)
    assert p.forward == {"module.body.w": "net.body.w"}
    assert p.dropped == [("module.head.w", "drop net.head")]
    assert plan(["a.w"], [StripPrefix(prefix="module")]).unmatched_rules == ["strip-prefix module"]


def test_collision_is_an_error_never_last_wins():
    p = plan(["module.a.w", "a.w"], [StripPrefix(prefix="module")])
    assert p.collisions == {"a.w": ["module.a.w", "a.w"]}
    with pytest.raises(RemapConflict, match=r"module\.a\.w and a\.w would all become a\.w"):
        p.check()


def test_toml_rules_all_kinds_in_order():
    import tomllib

    doc = tomllib.loads(r'''
[[rule]]
preset = "wrappers"
[[rule]]
map = { "encoder" = "backbone", "backbone" = "encoder" }
[[rule]]
regex = '^layer(\d+)\.'
replace = 'stage\1.'
[[rule]]
drop = ["aux"]
[[rule]]
drop_regex = 'num_batches_tracked$'
[[rule]]
add_prefix = "net"
note = "LightningModule attribute"
''')
    rules = parse_rules(doc)
    keys = ["module.encoder.w", "module.backbone.w", "module.layer3.conv.w", "module.aux.w",
            "module.bn.num_batches_tracked"]
    p = plan(keys, rules)
    assert [r.dst for r in p.mapping] == ["net.backbone.w", "net.encoder.w", "net.stage3.conv.w"]
    assert [k for k, _ in p.dropped] == ["module.aux.w", "module.bn.num_batches_tracked"]
    assert p.mapping[0].reason.endswith("LightningModule attribute")


@pytest.mark.parametrize("doc, match", [
    ({"rule": [{"strip_prefix": "a", "add_prefix": "b"}]}, "exactly one"),
    ({"rule": [{"regex": "(", "replace": "x"}]}, "invalid regex"),
    ({"rule": [{"regex": "a"}]}, "needs a 'replace'"),
    ({"rule": [{"frobnicate": "a"}]}, "unknown field"),
    ({"rules": []}, "unknown top-level"),
    ({"rule": [{"map": {"a": 3}}]}, "module path"),
    ({"rule": [{"strip_prefix": "a..b"}]}, "empty component"),
])
def test_bad_rules_are_usage_errors(doc, match):
    with pytest.raises(UsageError, match=match):
        parse_rules(doc)


def test_bad_map_option():
    with pytest.raises(UsageError, match="OLD=NEW"):
        parse_map(["conv1"])
