"""Waiting for the worker pool from inside it: a programming error, said at once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from helpers import WAIT

from berrymq import Bus, Message


@pytest.mark.parametrize("wait", [Bus.join, Bus.flush], ids=["join", "flush"])
def test_a_receiver_in_the_pool_that_waits_for_the_pool_gets_a_runtime_error(
        wait: Callable[[Bus], bool]) -> None:
    """join() or flush() from a worker would wait for itself: it raises RuntimeError (as a
    blocking call on the I/O thread does, see docs/api.md) naming the bus and why, and
    the pool goes on."""
    raised: list[BaseException] = []
    done = threading.Event()

    def receiver(message: Message) -> None:
        try:
            wait(bus)
        except BaseException as exc:
            raised.append(exc)
        done.set()

    with Bus(multiplicity=2, name="waits") as bus:
        bus.subscribe("w:*", receiver, weak=False)
        bus.twitter("w:x")
        assert done.wait(WAIT)
        assert bus.join(WAIT)
    assert len(raised) == 1 and type(raised[0]) is RuntimeError, raised
    assert str(raised[0]) == ("join() or flush() of bus 'waits' from a receiver running in "
                              "its worker pool would wait for that receiver itself; it "
                              "would deadlock")
