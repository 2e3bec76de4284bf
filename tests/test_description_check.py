"""berrymq._description_check: a picture of the network that came from another process is
checked before it is drawn, and a malformed one is named by its first wrong field."""

from __future__ import annotations

from typing import Any

import pytest

from berrymq._description_check import check_description
from berrymq.network import describe


def test_a_description_made_here_passes(berrymq_bus: Any) -> None:
    berrymq_bus.subscribe("job:*", print, weak=False)
    check_description(describe(berrymq_bus))


def test_missing_lists_are_drawn_empty() -> None:
    check_description({})
    check_description({"receivers": [{"id": "r1"}], "forwarders": None})


@pytest.mark.parametrize(("description", "named"), [
    ([], "the description is [], not an object"),
    ({"forwarders": "2"}, "forwarders is '2'"),
    ({"receivers": {}}, "receivers is {}, not a list"),
    ({"receivers": [1]}, "receivers[0] is 1, not an object"),
    ({"receivers": [{}]}, "receivers[0] has no 'id'"),
    ({"receivers": [{"id": 5}]}, "receivers[0].id is 5"),
    ({"receivers": [{"id": "r", "follows": [{}]}]}, "receivers[0].follows[0] has no 'pattern'"),
    ({"senders": [{"id": "s", "sends": ["a:b", 3]}]}, "senders[0].sends[1] is 3, not a string"),
    ({"connections": [{"id": "c"}]}, "connections[0] has no 'address'"),
    ({"transports": [{"scheme": "tcp"}]}, "transports[0] has no 'status'"),
    ({"receivers": [{"id": "x" * 100}, {"id": 1}]}, "receivers[1].id is 1"),
])
def test_the_first_wrong_field_is_named(description: object, named: str) -> None:
    with pytest.raises(ValueError, match="^" + named.replace("[", r"\[").replace("]", r"\]")):
        check_description(description)


def test_a_long_value_is_shortened_in_the_error() -> None:
    with pytest.raises(ValueError) as caught:
        check_description({"receivers": [{"id": ["x" * 1000]}]})
    assert len(str(caught.value)) < 80 and str(caught.value).endswith("...")
