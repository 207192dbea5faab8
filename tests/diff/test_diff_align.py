"""Key alignment works on whole dotted components, on both sides, and refuses collisions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckpttool.errors import RemapConflict, UsageError
from ckpttool.ops.diff.align import Alignment, align_keys, map_key, normalize_key, parse_maps

_PART = st.sampled_from(["conv1", "conv10", "conv", "1", "0", "module", "_orig_mod", "bn", "weight", "modules"])
_PATH = st.lists(_PART, min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(key=_PATH, old=_PATH, new=_PATH)
def test_map_touches_whole_component_prefixes_only(key, old, new):
    got = map_key(".".join(key), ".".join(old), ".".join(new))
    if key[:len(old)] == old:
        assert got == ".".join(new + key[len(old):])
    else:
        assert got == ".".join(key)


@settings(max_examples=200, deadline=None)
@given(wrappers=st.lists(st.sampled_from(["module", "_orig_mod"]), max_size=4), rest=_PATH)
def test_normalize_drops_any_mix_of_leading_wrappers(wrappers, rest):
    while rest and rest[0] in ("module", "_orig_mod") and len(rest) > 1:
        rest = rest[1:]
    assert normalize_key(".".join(wrappers + rest)) == ".".join(rest)


def test_normalize_keeps_lookalikes():
    assert normalize_key("modules.x") == "modules.x"
    assert normalize_key("module") == "module"
    assert normalize_key("_orig_mod.module.encoder.module.x") == "encoder.module.x"


def test_longest_map_wins_and_maps_are_simultaneous():
    al = Alignment(maps=parse_maps(["a=x", "a.b=y", "x=a"]))
    names = align_keys(["a.b.w", "a.c.w", "x.w"], al, side="a").names
    assert names == {"y.w": "a.b.w", "x.c.w": "a.c.w", "a.w": "x.w"}
    assert align_keys(["a.b.w"], al, side="b").names == {"a.b.w": "a.b.w"}  # maps rename A only


def test_collisions_and_bad_maps_are_errors():
    with pytest.raises(RemapConflict):
        align_keys(["module.w", "w"], Alignment(normalize=True), side="b")
    for bad in (["x"], ["=y"], ["a=b", "a=c"]):
        with pytest.raises(UsageError):
            parse_maps(bad)
