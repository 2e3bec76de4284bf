"""berrymq._pooling: a bus changing and stopping its worker pool (a pool started while the
bus closes), and waiting for the pool from inside it (a programming error, said at once)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from helpers import WAIT

from berrymq import Bus, BusClosed, Message


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


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("berrymq-worker")]


def test_a_pool_started_while_the_bus_closes_is_stopped_or_refused() -> None:
    """A thread sets the multiplicity over and over while the bus closes: after close()
    no pool and no worker thread is left, and the thread's last call raised BusClosed
    (a pool started after the close stopped the old one stayed, its threads running)."""
    before = set(worker_threads())
    for _ in range(100):
        bus = Bus(name="race")
        started = threading.Event()
        outcome: list[BaseException] = []

        def flip(bus: Bus = bus, started: threading.Event = started,
                 outcome: list[BaseException] = outcome) -> None:
            while True:
                try:
                    bus.set_multiplicity(2)
                except BusClosed as exc:
                    outcome.append(exc)
                    return
                started.set()

        thread = threading.Thread(target=flip)
        thread.start()
        assert started.wait(WAIT)
        bus.close()
        assert bus.pool is None and bus.multiplicity == 0
        assert set(worker_threads()) <= before
        thread.join(WAIT)
        assert not thread.is_alive() and len(outcome) == 1
        assert bus.pool is None
        assert set(worker_threads()) <= before
