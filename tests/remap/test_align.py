"""Alignment decisions: each with a reason; ambiguities reported, never guessed."""

from __future__ import annotations

from ckpttool.ops.remap import Target, align, coverage, plan

W, B = (6, 3, 5, 5), (6,)


def _run(src: dict, tgt: dict):
    result = align(src, Target(tgt))
    p = plan(list(src), result.rules(list(src)))
    return result, p


def test_same_name_unique_signature_and_order():
    src = {"a.weight": W, "a.bias": B, "l1.weight": (4, 4), "l2.weight": (4, 4), "x.weight": (9,)}
    tgt = {"a.weight": W, "a.bias": B, "blocks.0.weight": (4, 4), "blocks.1.weight": (4, 4), "y.weight": (9,)}
    result, p = _run(src, tgt)
    assert result.matches["a"] == ("a", "same name and shapes")
    assert result.matches["l1"] == ("blocks.0", "same shapes, by order (1 of 2)")
    assert result.matches["l2"] == ("blocks.1", "same shapes, by order (2 of 2)")
    assert result.matches["x"] == ("y", "unique shape signature")
    assert coverage({r.dst: src[r.src] for r in p.mapping}, Target(tgt)).loads_strict


def test_name_similarity_beats_order_when_clear():
    src = {"encoder.query.weight": (8, 8), "encoder.value.weight": (8, 8)}
    tgt = {"enc.value_proj.weight": (8, 8), "enc.query_proj.weight": (8, 8)}
    result, p = _run(src, tgt)
    assert result.matches["encoder.query"][0] == "enc.query_proj"
    assert "name similarity" in result.matches["encoder.query"][1]
    assert p.forward["encoder.value.weight"] == "enc.value_proj.weight"


def test_two_sources_for_one_target_is_ambiguous_and_both_stay_out():
    src = {"conv1.weight": W, "conv1.bias": B, "conv_a.weight": W, "conv_a.bias": B}
    tgt = {"backbone.0.weight": W, "backbone.0.bias": B}
    result, p = _run(src, tgt)
    assert result.ambiguous == [(["conv1", "conv_a"], ["backbone.0"])]
    (finding,) = [f for f in result.findings if f.code == "remap.ambiguous"]
    assert finding.hint == "settle it with --map, e.g. --map conv1=backbone.0"
    assert not p.mapping and len(p.dropped) == 4


def test_leftovers_missing_and_shape_mismatch_in_coverage():
    src = {"a.weight": (3, 3), "b.weight": (5,)}
    tgt = {"a.weight": (3, 4), "c.weight": (7,)}
    result, _ = _run(src, tgt)
    assert sorted(result.leftovers) == ["a", "b"]
    assert result.missing == ["a", "c"]
    codes = {f.code for f in result.findings}
    assert codes == {"remap.leftover", "remap.missing"}
    cov = coverage({"a.weight": (3, 3)}, Target(tgt))
    assert cov.shape_mismatched == [("a.weight", (3, 3), (3, 4))] and cov.missing == ["c.weight"]
    assert not cov.loads_strict and cov.to_dict()["counts"]["shape_mismatched"] == 1


def test_parent_and_child_modules_decided_separately():
    src = {"blk.weight": (2,), "blk.sub.weight": (3,)}
    tgt = {"stage.weight": (2,), "blk.sub.weight": (3,)}
    _, p = _run(src, tgt)
    assert p.forward == {"blk.weight": "stage.weight", "blk.sub.weight": "blk.sub.weight"}


def test_name_match_then_the_one_left():
    src = {"conv1.weight": W, "conv_a.weight": W, "fc.weight": (2, 2)}
    tgt = {"model.conv1.weight": W, "model.conv_a.weight": W, "model.fc.weight": (2, 2)}
    result, p = _run(src, tgt)
    assert result.matches["conv_a"] == ("model.conv_a", "same shapes, name similarity 0.83")
    assert result.matches["conv1"] == ("model.conv1", "same shapes, the one left after name matches")
    assert result.matches["fc"] == ("model.fc", "unique shape signature")
    assert all(r.dst == "model." + r.src for r in p.mapping)


FC = {"fc1.weight": (120, 400), "fc1.bias": (120,), "fc3.weight": (10, 84), "fc3.bias": (10,)}
TARGET = {"backbone.0.weight": W, "backbone.0.bias": B, "backbone.3.weight": (16, 6, 5, 5), **FC}


def test_order_picks_the_module_that_keeps_it():
    src = {"conv1.weight": W, "conv1.bias": B, "conv2.weight": (16, 6, 5, 5), **FC, "conv_a.weight": W,
           "conv_a.bias": B}
    result, p = _run(src, TARGET)
    assert result.matches["conv1"] == ("backbone.0", "kept module order; conv_a also fits backbone.0")
    assert result.outvoted == {"conv_a": "out of module order; backbone.0 went to conv1"}
    assert not result.ambiguous and not result.leftovers and not result.missing
    (d,) = result.decisions
    assert (d.candidates, d.chosen, d.dropped, d.undecided) == (["conv1", "conv_a"], {"conv1": "backbone.0"},
                                                                ["conv_a"], [])
    assert coverage({r.dst: src[r.src] for r in p.mapping}, Target(TARGET)).loads_strict


def test_order_holds_when_the_source_registers_fc_first():
    src = {**FC, "conv1.weight": W, "conv1.bias": B, "conv2.weight": (16, 6, 5, 5), "conv_a.weight": W,
           "conv_a.bias": B}
    result, _ = _run(src, TARGET)
    assert result.matches["conv1"][0] == "backbone.0" and "conv_a" in result.outvoted


def test_the_later_module_wins_when_the_target_puts_it_later():
    src = {"conv_x.weight": W, "conv2.weight": (16, 6, 5, 5), "conv_y.weight": W}
    tgt = {"stage.0.weight": (16, 6, 5, 5), "stage.1.weight": W}
    result, _ = _run(src, tgt)
    assert result.matches["conv_y"][0] == "stage.1" and list(result.outvoted) == ["conv_x"]


def test_where_order_cannot_decide_names_break_the_tie():
    src = {"x.cls.weight": (4, 4), "x.box.weight": (4, 4), "stem.weight": (2,)}
    tgt = {"stem.weight": (2,), "pred_boxes.weight": (4, 4)}
    result, p = _run(src, tgt)
    assert result.matches["x.box"][0] == "pred_boxes"
    assert result.matches["x.box"][1].startswith("kept module order, then the closest name")
    assert p.forward["x.box.weight"] == "pred_boxes.weight" and "x.cls.weight" not in p.forward


def test_where_order_and_names_cannot_decide_nothing_is_guessed():
    src = {"stem.weight": (2,), "a1.weight": (4, 4), "a2.weight": (4, 4), "tail.weight": (3,)}
    tgt = {"stem.weight": (2,), "blk.weight": (4, 4), "tail.weight": (3,)}
    result, p = _run(src, tgt)
    assert result.ambiguous == [(["a1", "a2"], ["blk"])] and not result.missing
    (finding,) = [f for f in result.findings if f.code == "remap.ambiguous"]
    assert "cannot tell a1, a2 apart; none of them was moved" in finding.message
    assert finding.hint == "settle it with --map, e.g. --map a1=blk"
    assert set(p.forward) == {"stem.weight", "tail.weight"}
