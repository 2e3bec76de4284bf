"""SPEC 4: the pull API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import queue as stdlib_queue
import threading
import time
from typing import Any

import pytest
from helpers import WAIT

import berrymq
from berrymq import (
    Bus,
    BusClosed,
    Empty,
    Queue,
    QueueClosed,
    QueueFull,
    twitter,
)
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.receivers.queues import SHARED_STORES, QueueStore


def test_stores_matching_messages_in_order(berrymq_bus: Bus) -> None:
    q = Queue("task:*")
    twitter("task:a", 1)
    twitter("other:a", 2)
    twitter("task:b", 3)
    assert q.qsize() == 2 and not q.empty()
    assert [q.get().args, q.get_nowait().args] == [(1,), (3,)]
    assert q.empty()


def test_only_messages_sent_after_creation(berrymq_bus: Bus) -> None:
    twitter("early:x")
    q = Queue("early:*")
    assert q.empty()


def test_empty_is_the_standard_library_empty(berrymq_bus: Bus) -> None:
    q = Queue("nothing:*")
    assert Empty is stdlib_queue.Empty
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(Empty):
        q.get(False)
    started = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - started >= 0.04
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    twitter("nothing:x", 1)
    assert q.get(block=False).args == (1,)


def test_get_blocks_until_a_message_arrives(berrymq_bus: Bus) -> None:
    q = Queue("wait:*")
    waiting = threading.Event()
    result: list[object] = []

    def consumer() -> None:
        waiting.set()
        result.append(q.get().args)  # block=True, no timeout

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    assert waiting.wait(WAIT)
    twitter("wait:now", "hello")
    thread.join(WAIT)
    assert not thread.is_alive()
    assert result == [("hello",)]


def test_standalone_queues_each_get_a_copy(berrymq_bus: Bus) -> None:
    first, second = Queue("copy:*"), Queue("copy:*")
    for n in range(5):
        twitter("copy:x", n)
    assert first.qsize() == second.qsize() == 5
    assert [first.get_nowait().args[0] for _ in range(5)] == list(range(5))
    assert [second.get(timeout=WAIT).args[0] for _ in range(5)] == list(range(5))
    assert first.empty() and second.empty()


def test_shared_queues_compete(berrymq_bus: Bus) -> None:
    first, second = Queue("work:*", shared=True), Queue("work:*", shared=True)
    copy = Queue("work:*")  # a standalone queue still gets its own copy
    for n in range(10):
        twitter("work:item", n)
    takers = [first, second, first, second, second, first, first, second, second, second]
    taken = [q.get_nowait().args[0] for q in takers]
    assert taken == list(range(10))  # one store, in sending order, whichever queue takes
    with pytest.raises(Empty):
        first.get_nowait()
    with pytest.raises(Empty):
        second.get_nowait()
    assert copy.qsize() == 10
    with pytest.raises(ValueError, match="maxsize"):
        Queue("work:*", shared=True, maxsize=3)


def test_shared_queues_each_message_taken_exactly_once_by_threads(berrymq_bus: Bus) -> None:
    consumers = [Queue("jobs:*", shared=True) for _ in range(4)]
    taken: list[int] = []
    lock = threading.Lock()

    def consume(q: Queue) -> None:
        for message in q:
            with lock:
                taken.append(message.args[0])

    threads = [threading.Thread(target=consume, args=(q,)) for q in consumers]
    for thread in threads:
        thread.start()
    for n in range(2000):
        twitter("jobs:n", n)
    deadline = time.monotonic() + 30
    while len(taken) < 2000 and time.monotonic() < deadline:
        threading.Event().wait(0.01)  # polled condition with a deadline
    for q in consumers:  # closing a shared queue stops its consumer, at once
        q.close()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert sorted(taken) == list(range(2000))


def test_shared_store_outlives_one_closed_queue(berrymq_bus: Bus) -> None:
    first, second = Queue("s:*", shared=True), Queue("s:*", shared=True)
    first.close()
    twitter("s:x")
    with pytest.raises(QueueClosed):
        first.get_nowait()  # a closed queue takes nothing more: the message is second's
    assert second.get_nowait().id == "s:x"
    assert list(first) == []


def test_closing_a_shared_queue_wakes_its_blocked_getter(berrymq_bus: Bus) -> None:
    first, second = Queue("w:*", shared=True), Queue("w:*", shared=True)
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def getter() -> None:
        waiting.set()
        try:
            first.get(timeout=30)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=getter)
    thread.start()
    assert waiting.wait(5)
    first.close()
    thread.join(10)
    assert [type(e) for e in outcome] == [QueueClosed]
    twitter("w:after")
    assert second.get_nowait().id == "w:after"


def test_qsize_empty_full(berrymq_bus: Bus) -> None:
    q = Queue("t:*", maxsize=2)
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    twitter("t:1")
    assert (q.qsize(), q.empty(), q.full()) == (1, False, False)
    twitter("t:2")
    assert (q.qsize(), q.empty(), q.full()) == (2, False, True)
    q.get()
    assert (q.qsize(), q.empty(), q.full()) == (1, False, False)
    unbounded = Queue("u:*")
    for _ in range(100):
        twitter("u:x")
    assert unbounded.qsize() == 100 and not unbounded.full()


def test_bounded_queue_refuses_loudly(berrymq_plugin_host: Any) -> None:
    # Even on a bus that only logs receivers' errors (the default), a refused message is
    # reported to the sender: nothing is dropped silently.
    bus = Bus(plugins=berrymq_plugin_host)
    with berrymq.use_bus(bus):
        q = Queue("b:*", maxsize=2, on_full="refuse")
        twitter("b:1")
        twitter("b:2")
        assert q.full()
        refused = r"queue b:\* is full \(2 messages\); message b:3 was refused"
        with pytest.raises(QueueFull, match=refused) as info:
            twitter("b:3")
        assert isinstance(info.value, stdlib_queue.Full)
        assert [q.get_nowait().id, q.get_nowait().id] == ["b:1", "b:2"]
        twitter("b:4")  # room again
        assert q.get_nowait().id == "b:4"
    bus.close()


def test_bounded_queue_blocks_sender_then_refuses(berrymq_bus: Bus) -> None:
    q = Queue("blk:*", maxsize=1, put_timeout=0.05)
    twitter("blk:1")
    started = time.monotonic()
    with pytest.raises(QueueFull, match="after waiting 0.05s"):
        twitter("blk:2")
    assert 0.04 <= time.monotonic() - started < WAIT
    assert q.qsize() == 1


def test_bounded_queue_block_policy_waits_for_a_consumer(berrymq_bus: Bus) -> None:
    q = Queue("room:*", maxsize=1, put_timeout=10)
    twitter("room:1")
    sender_done = threading.Event()

    def sender() -> None:
        twitter("room:2")
        sender_done.set()

    thread = threading.Thread(target=sender)
    thread.start()
    assert not sender_done.wait(0.05)  # blocked: the queue is full
    assert q.get(timeout=5).id == "room:1"
    assert sender_done.wait(10)
    assert q.get(timeout=5).id == "room:2"
    thread.join()


def test_queue_full_does_not_stop_other_receivers(berrymq_bus: Bus) -> None:
    q = Queue("f:*", maxsize=1, on_full="refuse")
    got: list[str] = []
    berrymq.regist_function("f:*", lambda m: got.append(m.id), weak=False)
    twitter("f:1")
    with pytest.raises(QueueFull):
        twitter("f:2")
    assert got == ["f:1", "f:2"]
    assert q.qsize() == 1


def test_close_with_and_iteration(berrymq_bus: Bus) -> None:
    with Queue("c:*") as q:
        twitter("c:1")
        twitter("c:2")
    twitter("c:3")  # after close: not stored
    assert [m.id for m in q] == ["c:1", "c:2"]
    with pytest.raises(QueueClosed):
        q.get()
    with pytest.raises(Empty):  # QueueClosed is an Empty
        q.get_nowait()
    assert q.closed and q.empty()
    closed = Queue("d:*")
    twitter("d:1")
    closed.close()
    twitter("d:2")
    assert closed.get_nowait().id == "d:1"  # what was stored before close can still be taken
    started = time.monotonic()
    with pytest.raises(QueueClosed):
        closed.get(timeout=WAIT)  # closed and drained: does not wait
    assert time.monotonic() - started < WAIT


def test_iteration_yields_messages_as_they_come(berrymq_bus: Bus) -> None:
    q = Queue("it:*")

    def producer() -> None:
        for n in range(3):
            twitter("it:n", n)
        q.close()

    thread = threading.Thread(target=producer)
    thread.start()
    assert [m.args[0] for m in q] == [0, 1, 2]
    thread.join(WAIT)


def test_close_wakes_a_blocked_getter(berrymq_bus: Bus) -> None:
    q = Queue("wake:*")
    errors: list[BaseException] = []
    waiting = threading.Event()

    def getter() -> None:
        waiting.set()
        try:
            q.get()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=getter)
    thread.start()
    assert waiting.wait(5)
    q.close()
    thread.join(10)
    assert not thread.is_alive()
    assert [type(e) for e in errors] == [QueueClosed]


def test_garbage_collected_queue_stops_receiving(berrymq_bus: Bus) -> None:
    q = Queue("gc:*")
    assert len(berrymq_bus.subscriptions()) == 1
    del q
    gc.collect()
    twitter("gc:x")
    assert berrymq_bus.subscriptions() == []


def test_bad_arguments(berrymq_bus: Bus) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        Queue("x:*", maxsize=-1)
    with pytest.raises(ValueError, match="on_full"):
        Queue("x:*", maxsize=1, on_full="drop")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Queue bus must be a berrymq.Bus, got 'not a bus'"):
        Queue("x:*", bus="not a bus")  # type: ignore[arg-type]
    assert "x:*" in repr(Queue("x:*"))


def test_queue_on_an_explicit_bus() -> None:
    bus = Bus()
    q = Queue("own:*", bus=bus)
    bus.twitter("own:x")
    berrymq.twitter("own:y")  # the default bus: not this queue's
    assert [m.id for m in (q.get_nowait(),)] == ["own:x"]
    assert q.empty()
    bus.close()


def test_when_every_shared_queue_closed_what_is_left_can_be_drained(berrymq_bus: Bus) -> None:
    first, second = Queue("left:*", shared=True), Queue("left:*", shared=True)
    for n in range(3):
        twitter("left:x", n)
    first.close()
    with pytest.raises(QueueClosed):
        first.get_nowait()  # second is still open: the messages are its
    second.close()  # the last one: the store closes, nothing is stranded
    assert [m.args[0] for m in first] == [0, 1, 2]
    assert list(second) == []


def test_a_dropped_shared_queue_counts_as_closed(berrymq_bus: Bus) -> None:
    kept, dropped = Queue("drop:*", shared=True), Queue("drop:*", shared=True)
    del dropped  # never closed
    gc.collect()
    kept.close()  # the last open one: the store stops receiving
    twitter("drop:x")
    assert berrymq_bus.subscriptions() == []
    with pytest.raises(QueueClosed):
        kept.get_nowait()


def test_a_shared_queue_made_while_the_last_one_closes_gets_a_store_that_receives(
        berrymq_bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread makes a shared queue of the pattern just as the last one closes
    (forced here: from inside the store's close). It gets a store of its own, never the
    one being closed, where it would receive nothing."""
    last = Queue("race:*", shared=True)
    store = berrymq_bus.state(SHARED_STORES)[Identifier("race:*")]
    made: list[Queue] = []
    maker = threading.Thread(target=lambda: made.append(Queue("race:*", shared=True)))
    close = type(store).close

    def close_meanwhile(self: object) -> None:
        maker.start()
        maker.join(0.5)  # done at once where nothing stops it; else it waits for this close
        close(self)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "close", close_meanwhile.__get__(store))
    last.close()
    monkeypatch.undo()
    maker.join(WAIT)
    [late] = made
    twitter("race:x", 1)
    assert late.get(timeout=WAIT).args == (1,)


def test_a_closed_shared_queue_drains_once_the_open_one_was_dropped(berrymq_bus: Bus) -> None:
    closed, dropped = Queue("gone:*", shared=True), Queue("gone:*", shared=True)
    twitter("gone:x", 1)
    closed.close()
    del dropped
    gc.collect()
    assert [m.args[0] for m in closed] == [1]  # what is left is no longer stranded
    assert berrymq_bus.subscriptions() == []


def test_an_infinite_put_timeout_waits_for_room_as_long_as_it_takes(berrymq_bus: Bus) -> None:
    q = Queue("endless:*", maxsize=1, put_timeout=float("inf"))
    sent = threading.Event()

    def sender() -> None:
        for n in range(3):
            twitter("endless:x", n)
        sent.set()

    thread = threading.Thread(target=sender)
    thread.start()
    assert [q.get(timeout=WAIT).args[0] for _ in range(3)] == [0, 1, 2]  # none lost
    assert sent.wait(WAIT)
    thread.join()


@pytest.mark.parametrize(("put_timeout", "error"), [
    (float("nan"), ValueError), (-1, ValueError), (None, TypeError), ("1", TypeError),
    (True, TypeError),
])
def test_a_bad_put_timeout_is_refused_by_name(berrymq_bus: Bus, put_timeout: Any,
                                              error: type[Exception]) -> None:
    with pytest.raises(error, match="put_timeout"):
        Queue("bad:*", maxsize=1, put_timeout=put_timeout)
    assert berrymq_bus.subscriptions() == []


def test_get_with_an_infinite_timeout_waits_with_no_limit(berrymq_bus: Bus) -> None:
    q = Queue("g:*")
    sender = threading.Timer(0.05, lambda: twitter("g:x"))
    sender.start()
    assert q.get(timeout=float("inf")).id == "g:x"  # was a bare OverflowError
    sender.join()
    with pytest.raises(TypeError, match="timeout must be a number"):
        q.get(timeout="1")  # type: ignore[arg-type]


def test_a_shared_queue_refuses_a_later_queue_with_another_policy(berrymq_bus: Bus) -> None:
    first = Queue("pol:*", shared=True, maxsize=2, put_timeout=0.5)
    with pytest.raises(ValueError, match=r"exists with on_full='block'; "
                                         r"cannot share it with on_full='refuse'"):
        Queue("pol:*", shared=True, maxsize=2, on_full="refuse")
    with pytest.raises(ValueError, match=r"exists with put_timeout=0.5; "
                                         r"cannot share it with put_timeout=inf"):
        Queue("pol:*", shared=True, maxsize=2, put_timeout=float("inf"))
    same = Queue("pol:*", shared=True, maxsize=2, put_timeout=0.5)
    assert same._store is first._store
    unbounded = Queue("any:*", shared=True)  # on_full and put_timeout do not apply to it
    assert Queue("any:*", shared=True, on_full="refuse")._store is unbounded._store


def test_a_closed_shared_queue_drains_async_once_the_open_one_was_dropped(
        berrymq_bus: Bus) -> None:
    closed, dropped = Queue("agone:*", shared=True), Queue("agone:*", shared=True)
    twitter("agone:x", 1)
    closed.close()
    del dropped
    gc.collect()

    async def drain() -> list[int]:
        return [message.args[0] async for message in closed]

    assert asyncio.run(drain()) == [1]  # then closed: the store closed with its last user
    assert berrymq_bus.subscriptions() == []


def test_a_message_stored_as_the_queue_closed_is_still_taken() -> None:
    """A sender that passed the closed check (or waited for room in a full bounded queue)
    stores its message behind the closing marker: it is taken, then the queue says closed
    (iterating once ended before it, though twitter had returned)."""
    store = QueueStore(Identifier("c:*"), 1, "block", 5.0, None)  # no bus: a store alone
    store.put(Message("c:x", (1,)))
    store.close()
    assert store.get(False, None).args == (1,)
    assert store.places is not None and store.places.acquire(blocking=False)  # its room
    store.items.put(Message("c:x", (2,)))  # where the waiting put stored it, after close
    assert store.get(False, None).args == (2,)
    for _ in range(2):
        with pytest.raises(QueueClosed):
            store.get(True, WAIT)


def test_a_timed_get_beside_get_nowait_returns_within_its_timeout(berrymq_bus: Bus) -> None:
    """CPython before 3.13: a timed SimpleQueue.get woken for a message another getter took
    could wait for ever (until the next message); a Queue's timed get waits on a condition
    of its own instead. Once the senders stop, every timed get returns within its
    timeout."""
    q = berrymq.Queue("h:*")
    sending = threading.Event()
    taking = threading.Event()
    sending.set()
    taking.set()
    longest_after_stop: list[float] = []

    def produce() -> None:
        while sending.is_set():
            berrymq_bus.twitter("h:x")

    def take_at_once() -> None:
        while taking.is_set():
            with contextlib.suppress(berrymq.Empty):
                q.get_nowait()

    def take_with_timeout() -> None:
        while True:
            started = time.monotonic()
            try:
                q.get(timeout=0.005)
            except berrymq.Empty:
                if not taking.is_set():
                    longest_after_stop.append(time.monotonic() - started)
                    return

    threads = [threading.Thread(target=f, daemon=True)
               for f in (take_with_timeout, produce, produce, take_at_once)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)  # (a fixed stretch of contention, not a wait for a condition)
    sending.clear()
    for thread in threads[1:3]:
        thread.join(WAIT)
    time.sleep(0.05)  # both getters on, the senders gone: where a timed get hung
    taking.clear()
    for thread in threads:
        thread.join(WAIT)
    assert not threads[0].is_alive(), "a get(timeout=0.005) went on waiting"
    assert longest_after_stop and longest_after_stop[0] < WAIT


@pytest.mark.parametrize("put_timeout", [float("inf"), 30.0])
def test_closing_a_full_queue_refuses_its_blocked_sender_at_once(put_timeout: float) -> None:
    """A sender waiting for room stayed blocked after close() (for ever with an infinite
    put_timeout), then got QueueFull from a queue that had unsubscribed."""
    bus = Bus()
    q = Queue("f:*", maxsize=1, put_timeout=put_timeout, bus=bus)
    bus.twitter("f:1")
    outcome: list[BaseException | None] = []
    sender = threading.Thread(target=lambda: _record(outcome, bus.twitter, "f:2"), daemon=True)
    sender.start()
    deadline = time.monotonic() + WAIT
    while not q._store.blocked and time.monotonic() < deadline:  # the sender waits for room
        time.sleep(0.005)
    assert q._store.blocked == 1
    began = time.monotonic()
    q.close()
    sender.join(WAIT)
    assert not sender.is_alive(), "the sender is still blocked on the closed queue"
    assert time.monotonic() - began < 5  # not the put_timeout
    [error] = outcome
    assert isinstance(error, QueueFull)
    assert str(error) == ("queue f:* was closed while message f:2 waited for room "
                          "(1 message): it was not stored")
    assert [m.id for m in q] == ["f:1"]  # what was stored before can still be taken
    bus.twitter("f:3")  # after the close: not for the queue, not refused
    bus.close()


def _record(into: list[BaseException | None], send: Any, *args: Any) -> None:
    try:
        send(*args)
    except BaseException as exc:  # recorded for the test to look at
        into.append(exc)
    else:
        into.append(None)


@pytest.mark.parametrize("shared", [False, True])
def test_closing_the_bus_closes_its_queues_and_wakes_their_consumers(shared: bool) -> None:
    """Bus.close() left its queues open: a consumer in ``for m in queue`` or ``get()``
    waited for ever, though nothing could reach it any more."""
    bus = Bus()
    queues = [Queue("job:*", shared=shared, bus=bus) for _ in range(2)]
    bus.twitter("job:1")
    seen: list[str] = []
    ended: list[BaseException] = []

    def iterate() -> None:
        seen.extend(m.id for m in queues[0])

    def get() -> None:
        try:
            while True:
                seen.append(queues[1].get().id)
        except QueueClosed as exc:
            ended.append(exc)

    consumers = [threading.Thread(target=f, daemon=True) for f in (iterate, get)]
    for consumer in consumers:
        consumer.start()
    deadline = time.monotonic() + WAIT
    while len(seen) < (1 if shared else 2) and time.monotonic() < deadline:
        time.sleep(0.005)
    bus.close()
    for consumer in consumers:
        consumer.join(WAIT)
    assert not any(consumer.is_alive() for consumer in consumers)
    assert all(q.closed for q in queues) and len(ended) == 1
    assert seen == ["job:1"] * (1 if shared else 2)
    with pytest.raises(BusClosed):
        Queue("job:*", shared=shared, bus=bus)


def test_a_queue_closed_with_its_bus_can_still_be_drained() -> None:
    bus = Bus()
    q = Queue("job:*", bus=bus)
    bus.twitter("job:1")
    bus.twitter("job:2")
    bus.close()
    assert q.closed
    assert [m.id for m in q] == ["job:1", "job:2"]
    with pytest.raises(QueueClosed):
        q.get(timeout=WAIT)


def test_block_is_a_flag(berrymq_bus: Bus) -> None:
    """``q.get(2)`` (meant as a timeout) took 2 for ``block`` and waited for ever (found by
    an outside audit)."""
    q = Queue("job:*", bus=berrymq_bus)
    berrymq_bus.twitter("job:stored")  # (the old code took it, and waited for ever without)
    with pytest.raises(TypeError, match="block for Queue.get must be True or False, got 2"):
        q.get(2)  # type: ignore[arg-type]
    assert q.get_nowait().id == "job:stored"
    with pytest.raises(Empty):  # the standard library's 0 and 1 are taken
        q.get(0)  # type: ignore[arg-type]
    berrymq_bus.twitter("job:again")
    assert q.get(1).id == "job:again"  # type: ignore[arg-type]
