"""A bounded queue garbage-collected without close() counts as closed (docs/introduction.md):
a sender waiting for room in it gets the closed queue's QueueFull at once (docs/delivery.md),
and what is sent to it later is not for it."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest
from helpers import WAIT, wait_for

from berrymq import Bus, Queue, QueueFull
from berrymq.receivers import _awaiting
from berrymq.receivers.queues import QueueStore

DROPPED = ("queue q:* was closed (garbage-collected without close()) while message q:2 "
           "waited for room (1 message): it was not stored")


def _blocked_sender(bus: Bus, store: weakref.ref[QueueStore]
                    ) -> tuple[threading.Thread, list[BaseException | None]]:
    """A thread sending q:2 to the full queue, returned once it waits for room."""
    outcome: list[BaseException | None] = []

    def send() -> None:
        try:
            bus.twitter("q:2")
        except BaseException as exc:  # recorded for the test to look at
            outcome.append(exc)
        else:
            outcome.append(None)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    wait_for(lambda: (s := store()) is not None and s.blocked == 1, what="the sender to wait")
    return sender, outcome


def _full_queues(bus: Bus, shared: bool, put_timeout: float) -> list[Queue]:
    queues = [Queue("q:*", shared=shared, maxsize=1, put_timeout=put_timeout, bus=bus)
              for _ in range(2 if shared else 1)]
    bus.twitter("q:1")  # full now
    return queues


def _dropped_unlooked(monkeypatch: pytest.MonkeyPatch, bus: Bus, shared: bool
                      ) -> tuple[threading.Thread, list[BaseException | None]]:
    """A full queue (shared or not) collected without close() while a sender waits in it,
    with the periodic look for dropped stores switched off: what ends the wait then is
    the test's to do."""
    monkeypatch.setattr(_awaiting, "_DROP_CHECK", 3600.0, raising=False)  # no look
    queues = _full_queues(bus, shared, float("inf"))
    sender, outcome = _blocked_sender(bus, weakref.ref(queues[0]._store))
    del queues
    gc.collect()
    return sender, outcome


def _assert_refused_as_dropped(sender: threading.Thread,
                               outcome: list[BaseException | None]) -> None:
    sender.join(WAIT)
    assert not sender.is_alive(), "the sender still waits for room in a dropped queue"
    [error] = outcome
    assert isinstance(error, QueueFull)
    assert str(error) == DROPPED


@pytest.mark.parametrize("put_timeout", [float("inf"), 60.0])
@pytest.mark.parametrize("shared", [False, True])
def test_a_sender_waiting_in_a_dropped_queue_is_refused_at_once(
        shared: bool, put_timeout: float) -> None:
    """The sender waited for ever (or until put_timeout, then got 'is full'), even after
    the bus's close(): nothing closed a store whose Queue objects were all collected."""
    bus = Bus()
    queues = _full_queues(bus, shared, put_timeout)
    store = queues[0]._store  # held to look at later: it is not a Queue object
    sender, outcome = _blocked_sender(bus, weakref.ref(store))
    began = time.monotonic()
    del queues  # never closed
    gc.collect()
    _assert_refused_as_dropped(sender, outcome)
    assert time.monotonic() - began < WAIT / 2  # not the put_timeout
    bus.twitter("q:3")  # sent later: not for the dropped queue, not refused
    assert bus.subscriptions() == []
    assert store.closed and store.qsize() == 1  # q:1 alone
    bus.close()


def test_a_shared_queue_closed_then_its_last_partner_dropped_refuses_the_sender() -> None:
    bus = Bus()
    closed, dropped = _full_queues(bus, True, float("inf"))
    store = weakref.ref(closed._store)
    sender, outcome = _blocked_sender(bus, store)
    closed.close()  # the other one is still open: the sender waits on
    assert sender.is_alive() and not outcome
    del dropped
    gc.collect()
    _assert_refused_as_dropped(sender, outcome)
    assert [m.id for m in closed] == ["q:1"]  # the store closed: what it held can be drained
    bus.close()


def test_closing_the_bus_closes_a_dropped_queue_with_a_waiting_sender(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The bus's close() closed only the Queue objects that were left."""
    bus = Bus()
    sender, outcome = _dropped_unlooked(monkeypatch, bus, shared=False)
    bus.close()
    _assert_refused_as_dropped(sender, outcome)


def test_a_new_shared_queue_does_not_join_a_dropped_store(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A store kept alive by its waiting sender after its queues were collected was
    joined by the next shared queue of the pattern, which got its old message."""
    bus = Bus()
    sender, outcome = _dropped_unlooked(monkeypatch, bus, shared=True)
    fresh = Queue("q:*", shared=True, maxsize=1, put_timeout=float("inf"), bus=bus)
    _assert_refused_as_dropped(sender, outcome)
    assert fresh.empty()
    bus.twitter("q:3")
    assert [fresh.get_nowait().id] == ["q:3"]
    bus.close()
