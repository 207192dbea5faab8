"""The list-backed pickle memo behaves exactly as the dict ``pickle`` uses, and stays small."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckpttool.io.pickle.memo import Memo
from ckpttool.io.pickle.run import run_pickle

indices = st.one_of(st.integers(0, 40), st.integers(0, 5000), st.integers(0, 2**32 - 1))
ops = st.lists(st.one_of(st.tuples(st.just("put"), indices), st.tuples(st.just("memoize"), st.none()),
                         st.tuples(st.just("get"), st.one_of(indices, st.integers(-3, -1)))), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops=ops)
def test_memo_matches_a_dict(ops: list[tuple[str, Any]]) -> None:
    memo, model = Memo(), {}
    for step, (op, index) in enumerate(ops):
        if op == "put":
            memo.put(index, step)
            model[index] = step
        elif op == "memoize":
            memo.put(len(memo), step)
            model[len(model)] = step
        else:
            try:
                expected = model[index]
            except KeyError:
                with pytest.raises(KeyError):
                    memo.get(index)
            else:
                assert memo.get(index) == expected
        assert len(memo) == len(model)
    assert len(memo.slots) <= 2 * len(model) + 1024


def test_far_puts_do_not_grow_the_list() -> None:
    memo = Memo()
    index = 1
    for _ in range(40):  # each put twice as far as the last: a list filled with holes would explode
        memo.put(index, index)
        index *= 2
    assert len(memo) == 40 and len(memo.slots) <= 2 * 40 + 1024
    assert memo.get(2**39) == 2**39


def test_pickle_with_out_of_order_puts_reads_as_pickle_does() -> None:
    import pickle

    # LONG_BINPUT far away, MEMOIZE after it (takes len(memo), not the highest index + 1), GETs of both
    data = (b"\x80\x04K\x07r\x00\x00\x00\x10K\x08\x94K\x09q\x00"  # memo {2**28: 7, 1: 8, 0: 9}
            b"(j\x00\x00\x00\x10h\x01h\x00l.")
    assert run_pickle(data, "x", None).value == pickle.loads(data) == [7, 8, 9]
