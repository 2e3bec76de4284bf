"""berrymq.transports.places: where a connection leads, for close_connection."""

from __future__ import annotations

import pytest

from berrymq.transports.places import place_of, same_place


@pytest.mark.parametrize(("wanted", "place", "same"), [
    ("tcp://localhost:7000", "tcp://127.0.0.1:7000", True),
    ("tcp://localhost:7000", "tcp://[::1]:7000", True),
    ("tcp://127.0.0.1:7000", "tcp://localhost:7000/", True),
    ("tcp://127.0.0.1:7000", "tcp://[::1]:7000", False),  # two servers may listen there
    ("tcp://localhost:7000", "tcp://127.0.0.1:7001", False),
    ("tcp://localhost:7000", "http://127.0.0.1:7000", False),
    ("tcp://localhost:7000", "tcp://10.0.0.1:7000", False),
])
def test_localhost_stands_for_either_loopback_address_but_they_stay_two_places(
        wanted: str, place: str, same: bool) -> None:
    assert same_place(place_of(wanted), place_of(place)) is same
