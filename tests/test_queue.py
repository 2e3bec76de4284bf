"""SPEC 4: the pull API."""

from __future__ import annotations

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
    Empty,
    Message,
    Queue,
    QueueClosed,
    QueueFull,
    twitter,
)


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
    started = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - started >= 0.04
    with pytest.raises(ValueError):
        q.get(timeout=-1)


def test_get_blocks_until_a_message_arrives(berrymq_bus: Bus) -> None:
    q = Queue("wait:*")
    waiting = threading.Event()
    result: list[object] = []

    def consumer() -> None:
        waiting.set()
        result.append(q.get(timeout=10).args)

    thread = threading.Thread(target=consumer)
    thread.start()
    assert waiting.wait(5)
    twitter("wait:now", "hello")
    thread.join(10)
    assert result == [("hello",)]


def test_standalone_queues_each_get_a_copy(berrymq_bus: Bus) -> None:
    first, second = Queue("copy:*"), Queue("copy:*")
    twitter("copy:x")
    assert first.qsize() == second.qsize() == 1


def test_shared_queues_compete(berrymq_bus: Bus) -> None:
    first, second = Queue("work:*", shared=True), Queue("work:*", shared=True)
    for n in range(10):
        twitter("work:item", n)
    taken = [first.get_nowait().args[0] for _ in range(4)]
    taken += [second.get_nowait().args[0] for _ in range(6)]
    assert sorted(taken) == list(range(10))
    with pytest.raises(Empty):
        first.get_nowait()
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


def test_bounded_queue_refuses_loudly(berrymq_bus: Bus) -> None:
    q = Queue("b:*", maxsize=2, on_full="refuse")
    twitter("b:1")
    twitter("b:2")
    assert q.full()
    with pytest.raises(QueueFull, match=r"queue b:\* is full \(2 messages\); message b:3 was refused"):
        twitter("b:3")
    assert [q.get_nowait().id, q.get_nowait().id] == ["b:1", "b:2"]
    twitter("b:4")
    assert q.get_nowait().id == "b:4"


def test_bounded_queue_blocks_sender_then_refuses(berrymq_bus: Bus) -> None:
    q = Queue("blk:*", maxsize=1, put_timeout=0.05)
    twitter("blk:1")
    started = time.monotonic()
    with pytest.raises(QueueFull, match="after waiting 0.05s"):
        twitter("blk:2")
    assert time.monotonic() - started >= 0.04
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


# -- SPEC 4, black-box: the pull API -------------------------------------------------------

def test_empty_is_stdlib_queue_empty() -> None:
    assert berrymq.Empty is stdlib_queue.Empty


def test_queue_standalone_copies_fifo_and_only_after_creation(berrymq_bus: Bus) -> None:
    twitter("task:before")
    q1 = Queue("task:*")
    q2 = Queue("task:*")
    other = Queue("other:*")
    for n in range(5):
        twitter("task:run", n)
    assert [q1.get_nowait().args[0] for _ in range(5)] == list(range(5))
    assert [q2.get(timeout=1).args[0] for _ in range(5)] == list(range(5))
    assert other.empty()
    with pytest.raises(Empty):
        q1.get_nowait()


def test_queue_get_nowait_and_block_false(berrymq_bus: Bus) -> None:
    q = Queue("t:*")
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(Empty):
        q.get(False)
    twitter("t:x", 1)
    assert q.get(block=False).args == (1,)


def test_queue_get_timeout(berrymq_bus: Bus) -> None:
    q = Queue("t:*")
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - start >= 0.04


def test_queue_get_blocks_until_a_message_arrives(berrymq_bus: Bus) -> None:
    q = Queue("t:*")
    waiting = threading.Event()
    result: list[Message] = []

    def consumer() -> None:
        waiting.set()
        result.append(q.get())  # block=True, no timeout

    thread = threading.Thread(target=consumer)
    thread.start()
    assert waiting.wait(WAIT)
    twitter("t:go", "payload")
    thread.join(WAIT)
    assert not thread.is_alive()
    assert result[0].args == ("payload",)


def test_queue_qsize_empty_full(berrymq_bus: Bus) -> None:
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


def test_full_queue_refuses_with_clear_error_never_drops(berrymq_plugin_host: Any) -> None:
    # Even on a bus that only logs receiver errors, a refused message is reported to the
    # sender: nothing is dropped silently.
    bus = Bus(plugins=berrymq_plugin_host)
    with berrymq.use_bus(bus):
        q = Queue("full:*", maxsize=2, on_full="refuse")
        twitter("full:1")
        twitter("full:2")
        with pytest.raises(stdlib_queue.Full) as info:
            twitter("full:3")
        assert isinstance(info.value, berrymq.QueueFull)
        assert "full:" in str(info.value)
        assert [q.get_nowait().id for _ in range(2)] == ["full:1", "full:2"]
        twitter("full:4")  # room again
        assert q.get_nowait().id == "full:4"
    bus.close()


def test_full_queue_default_policy_blocks_for_a_bounded_time(berrymq_bus: Bus) -> None:
    q = Queue("full:*", maxsize=1, put_timeout=0.1)
    twitter("full:1")
    start = time.monotonic()
    with pytest.raises(berrymq.QueueFull):
        twitter("full:2")
    assert time.monotonic() - start < WAIT
    assert q.qsize() == 1


def test_full_queue_blocked_sender_proceeds_when_room_frees(berrymq_bus: Bus) -> None:
    q = Queue("full:*", maxsize=1, put_timeout=WAIT)
    twitter("full:1")
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            twitter("full:2")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sender)
    thread.start()
    assert q.get(timeout=WAIT).id == "full:1"
    assert q.get(timeout=WAIT).id == "full:2"
    thread.join(WAIT)
    assert errors == []


def test_shared_queues_compete_black_box(berrymq_bus: Bus) -> None:
    a = Queue("job:*", shared=True)
    b = Queue("job:*", shared=True)
    copy = Queue("job:*")  # a standalone one still gets its own copy
    for n in range(6):
        twitter("job:n", n)
    taken = [a.get_nowait().args[0], b.get_nowait().args[0], a.get_nowait().args[0],
             b.get_nowait().args[0], b.get_nowait().args[0], a.get_nowait().args[0]]
    assert taken == list(range(6))
    with pytest.raises(Empty):
        a.get_nowait()
    with pytest.raises(Empty):
        b.get_nowait()
    assert copy.qsize() == 6


def test_shared_queue_exactly_once_across_threads(berrymq_bus: Bus) -> None:
    consumers = [Queue("work:*", shared=True) for _ in range(3)]
    total = 600
    results: list[list[int]] = [[] for _ in consumers]

    def consume(index: int) -> None:
        q = consumers[index]
        while True:
            try:
                message = q.get(timeout=WAIT)
            except Empty:
                return
            if message.action == "stop":
                return
            results[index].append(message.args[0])

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for n in range(total):
        twitter("work:item", n)
    for _ in threads:
        twitter("work:stop")
    for thread in threads:
        thread.join(WAIT * 2)
    assert not any(t.is_alive() for t in threads)
    everything = sorted(n for r in results for n in r)
    assert everything == list(range(total))


def test_queue_close_with_and_iteration(berrymq_bus: Bus) -> None:
    q = Queue("c:*")
    twitter("c:1")
    q.close()
    twitter("c:2")  # not stored: closed
    assert q.get_nowait().id == "c:1"
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=WAIT)  # closed and drained: does not wait

    with Queue("w:*") as w:
        twitter("w:1")
    twitter("w:2")
    assert [m.id for m in w] == ["w:1"]  # iteration ends once closed and drained


def test_queue_iteration_yields_messages_as_they_come(berrymq_bus: Bus) -> None:
    q = Queue("it:*")

    def producer() -> None:
        for n in range(3):
            twitter("it:n", n)
        q.close()

    thread = threading.Thread(target=producer)
    thread.start()
    assert [m.args[0] for m in q] == [0, 1, 2]
    thread.join(WAIT)


def test_closing_one_shared_queue_keeps_the_others(berrymq_bus: Bus) -> None:
    a = Queue("s:*", shared=True)
    b = Queue("s:*", shared=True)
    a.close()
    twitter("s:x")
    assert b.get(timeout=WAIT).id == "s:x"


def test_close_wakes_a_blocked_getter_black_box(berrymq_bus: Bus) -> None:
    q = Queue("b:*")
    waiting = threading.Event()
    outcome: list[Any] = []

    def getter() -> None:
        waiting.set()
        try:
            outcome.append(q.get())
        except Empty as exc:
            outcome.append(exc)

    thread = threading.Thread(target=getter)
    thread.start()
    assert waiting.wait(WAIT)
    q.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Empty)


def test_closed_shared_queue_takes_nothing_more(berrymq_bus: Bus) -> None:
    a = Queue("s:*", shared=True)
    b = Queue("s:*", shared=True)
    a.close()
    twitter("s:1")
    with pytest.raises(Empty):
        a.get_nowait()
    assert b.get_nowait().id == "s:1"


def test_queue_maxsize_must_be_valid(berrymq_bus: Bus) -> None:
    with pytest.raises((ValueError, TypeError)):
        Queue("a:b", maxsize=-1)
