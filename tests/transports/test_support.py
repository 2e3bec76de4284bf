"""berrymq.transports.support: the core's helpers that plugin distributions use, by their
public names (tests/test_layout.py checks that plugins use no other way in)."""

from __future__ import annotations

import berrymq.transports.support as support
from berrymq import Bus, Message
from berrymq.errors import QueueFull


def test_it_offers_what_it_lists() -> None:
    assert sorted(support.__all__) == ["LOSSES", "Refused", "SeenUids", "ask_local",
                                       "drop_tracebacks", "replies_so_far", "waits_for_room"]
    for name in support.__all__:
        assert getattr(support, name) is not None


def test_ask_local_answers_with_this_process_receivers(berrymq_bus: Bus) -> None:
    berrymq_bus.subscribe("sum:*", lambda m: sum(m.args), weak=False)
    assert support.ask_local(berrymq_bus, Message("sum:ints", (1, 2, 3)), 5.0) == [6]


def test_losses_are_the_bus_count(berrymq_bus: Bus) -> None:
    assert berrymq_bus.extensions.get(support.LOSSES) is berrymq_bus.losses


def test_drop_tracebacks_lets_go_of_them() -> None:
    try:
        raise QueueFull("full")
    except QueueFull as exc:
        error = exc
    assert error.__traceback__ is not None
    support.drop_tracebacks(error, None)
    assert error.__traceback__ is None
