"""pycontain.jsonfast writes what json writes and reads what it reads (NaN and Infinity
refused on input), for any JSON value, with every layout the runtime uses."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycontain import jsonfast


def _values(finite: bool) -> Any:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                        st.floats(allow_nan=False, allow_infinity=not finite))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
        max_leaves=40)


values, finite_values = _values(False), _values(True)
LAYOUTS: list = [{}, {"indent": 2}, {"indent": "\t"}, {"indent": 1, "sort_keys": True},
                 {"sort_keys": True}, {"separators": (",", ":")}, {"indent": 0},
                 {"indent": 4, "separators": (",", ": ")}]


@settings(max_examples=300, deadline=None)
@given(values, st.sampled_from(LAYOUTS))
def test_dumps_matches_json(value: Any, layout: dict) -> None:
    assert jsonfast.dumps(value, **layout) == json.dumps(value, **layout)


@settings(max_examples=300, deadline=None)
@given(finite_values, st.sampled_from([{}, {"indent": 2}]))
def test_loads_reads_back(value: Any, layout: dict) -> None:
    text = json.dumps(value, **layout)
    assert jsonfast.loads(text) == json.loads(text)
    assert jsonfast.loads(text.encode()) == json.loads(text)


def _outcome(f: Any, *args: Any, **kw: Any) -> Any:
    try:
        return f(*args, **kw)
    except (TypeError, ValueError) as e:
        return type(e)


def test_special_values_and_keys() -> None:
    for v in ([float("inf"), -0.0, 10**30], {1: 2, 2.5: 3, None: 4, False: 5}, (1, 2),
              {"a": 1, 2: 3}, {(1,): 2}):
        for layout in LAYOUTS:
            assert _outcome(jsonfast.dumps, v, **layout) == _outcome(json.dumps, v, **layout)


def test_default_is_used_for_unknown_objects() -> None:
    import datetime

    d = {"t": datetime.date(2020, 1, 1), "l": [datetime.date(2021, 1, 1)]}
    for layout in ({}, {"indent": 2}):
        assert jsonfast.dumps(d, default=str, **layout) == json.dumps(d, default=str, **layout)
        with pytest.raises(TypeError):
            jsonfast.dumps(d, **layout)


def test_circular_reference_is_refused() -> None:
    a: list = []
    a.append(a)
    for layout in ({}, {"indent": 2}):
        with pytest.raises(ValueError):
            jsonfast.dumps(a, **layout)


@pytest.mark.parametrize("bad", ["", " ", "[1", '{"a":1} x', "NaN", "[Infinity]", "[1,]",
                                 "{'a': 1}", b"\xff"])
def test_bad_input_is_a_value_error(bad: Any) -> None:
    with pytest.raises(ValueError):
        jsonfast.loads(bad)


def test_utf8_bom_and_whitespace() -> None:
    assert jsonfast.loads(b"\xef\xbb\xbf {\"a\": 1}\n") == {"a": 1}
    assert math.isinf(jsonfast.loads("1e999"))
