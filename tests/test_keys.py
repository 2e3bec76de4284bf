"""berrymq._keys: dict keys JSON cannot carry are refused, naming the key; what JSON
carries as it is passes, however it is nested or subclassed."""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Any

import pytest

from berrymq._keys import refuse_other_keys


class Name(str):
    pass


class Level(enum.IntEnum):
    LOW = 1


@pytest.mark.parametrize("value", [
    (("{not an object}", 1), {}),
    ([OrderedDict(a=1)], {"k": ({"n": [1, {"m": Level.LOW}]},)}),
    ({Name("key"): [Name("v"), 2.5, None, True]},),
])
def test_what_json_carries_as_it_is_passes(value: Any) -> None:
    refuse_other_keys(value)


@pytest.mark.parametrize(("value", "named"), [
    ({1: "a", "1": "b"}, "1 (int)"),
    ([[{"ok": {True: "t"}}]], "True (bool)"),
    (({None: 1},), "None (NoneType)"),
    ({"x": OrderedDict([(2.5, "f")])}, "2.5 (float)"),
])
def test_a_key_that_is_not_a_string_is_refused_naming_it(value: Any, named: str) -> None:
    with pytest.raises(TypeError, match=rf"a dict key {named.split(maxsplit=1)[0]} \("):
        refuse_other_keys(value)
