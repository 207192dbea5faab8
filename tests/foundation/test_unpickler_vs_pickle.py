"""The safe VM builds the same plain data ``pickle.loads`` builds, for every protocol."""

from __future__ import annotations

import collections
import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ckpttool.io.pickle.unpickler import SafeUnpickler
from ckpttool.model import PickledDict

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False), st.complex_numbers(allow_nan=False), st.text(max_size=40),
    st.binary(max_size=40),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.tuples(children, children),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=8), children, max_size=6),
        st.dictionaries(st.text(max_size=8), children, max_size=4).map(collections.OrderedDict),
        st.frozensets(st.integers(), max_size=4),
        st.sets(st.text(max_size=4), max_size=4),
    ),
    max_leaves=40,
)


def _plain(obj: Any) -> Any:
    """PickledDict → dict, recursively, so results compare with what pickle builds."""
    if isinstance(obj, PickledDict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


@settings(max_examples=150, deadline=None)
@given(value=values, protocol=st.integers(min_value=0, max_value=5))
def test_safe_vm_matches_pickle(value: Any, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    result = SafeUnpickler(data).load()
    assert _plain(result.value) == _plain(pickle.loads(data))
    assert result.end == len(data)


@settings(max_examples=60, deadline=None)
@given(value=values, protocol=st.integers(min_value=2, max_value=5))
def test_stops_where_pickle_stops(value: Any, protocol: int) -> None:
    first = pickle.dumps(value, protocol=protocol)
    stream = first + pickle.dumps("next", protocol=protocol)
    result = SafeUnpickler(stream).load()
    assert result.end == len(first)
    assert SafeUnpickler(stream, start=result.end).load().value == "next"


def test_shared_references_stay_shared() -> None:
    inner = [1, 2]
    value = SafeUnpickler(pickle.dumps({"a": inner, "b": inner}, protocol=4)).load().value
    assert value["a"] is value["b"]
