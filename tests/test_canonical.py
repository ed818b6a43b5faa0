"""Canonical JSON: one byte form for every equal value, refused for values JSON cannot hold exactly."""

from __future__ import annotations

import math

import pytest

from rail.canonical import canonical_json
from rail.errors import CanonicalJSONError, RailError


def test_canonical_json_is_sorted_compact_utf8_and_finite():
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    with pytest.raises(CanonicalJSONError, match="finite"):
        canonical_json({"x": math.nan})


@pytest.mark.parametrize("value", [math.inf, -math.inf, {"nested": [1, math.nan]}])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(CanonicalJSONError, match="finite"):
        canonical_json(value)


@pytest.mark.parametrize("value", [{"when": object()}, {1, 2}, b"bytes"])
def test_values_json_lacks_are_refused_as_rail_errors(value):
    with pytest.raises(RailError, match="JSON cannot represent"):
        canonical_json(value)


def test_equal_values_give_equal_bytes_whatever_their_key_order():
    first = {"z": {"b": [1, 2.5, None], "a": "✓"}, "a": True}
    second = {"a": True, "z": {"a": "✓", "b": [1, 2.5, None]}}
    expected = '{"a":true,"z":{"a":"✓","b":[1,2.5,null]}}'.encode()
    assert canonical_json(first) == canonical_json(second) == expected
