"""berrymq._blocked: closing a bus ends the waits of its own pool's workers on its queues
(a consumer, a sender waiting for room), which the close would otherwise wait for."""

from __future__ import annotations

import threading

from helpers import WAIT, wait_for

from berrymq import Bus, Empty, Message, Queue


def _closes_within(bus: Bus, seconds: float) -> bool:
    """Whether ``bus.close()``, in a thread of its own, returns within ``seconds``."""
    closer = threading.Thread(target=bus.close, daemon=True)
    closer.start()
    closer.join(seconds)
    return not closer.is_alive()


def _consuming(bus: Bus, jobs: Queue) -> list[int]:
    """Start a receiver on ``bus``'s pool that consumes ``jobs`` (``for job in jobs``)
    into the list returned, and wait until it runs."""
    done: list[int] = []
    consuming = threading.Event()

    def consumer(message: Message) -> None:
        consuming.set()
        done.extend(job.args[0] for job in jobs)

    bus.subscribe("start:consumer", consumer)
    bus.twitter("start:consumer")
    assert consuming.wait(WAIT)
    return done


def test_close_ends_a_pool_receiver_that_consumes_a_queue_of_the_same_bus() -> None:
    """close() waited for the pool, the pool for its receiver, and the receiver (``for
    job in jobs``) for close() to close the queue: the bus never closed."""
    bus = Bus(multiplicity=2, name="consumer")
    jobs = Queue("job:*", bus=bus)
    done = _consuming(bus, jobs)
    for number in range(5):
        bus.twitter("job:run", number)
    assert _closes_within(bus, WAIT)
    assert done == [0, 1, 2, 3, 4] and jobs.closed


def test_close_ends_a_pool_receiver_waiting_for_room_in_a_queue_of_the_same_bus() -> None:
    """The same with a receiver that relays to a full queue that waits for room for ever:
    its message is refused (the queue closed) and counted, not waited for."""
    bus = Bus(multiplicity=1, name="relay")
    out = Queue("out:*", maxsize=1, put_timeout=float("inf"), bus=bus)
    relayed = threading.Event()

    def relay(message: Message) -> None:
        if message.args[0] == 2:
            relayed.set()
        bus.twitter("out:x", message.args[0])

    bus.subscribe("in:x", relay)
    bus.twitter("in:x", 1)
    bus.twitter("in:x", 2)  # waits for room: out holds 1
    assert relayed.wait(WAIT)
    assert _closes_within(bus, WAIT)
    assert out.get_nowait().args == (1,)
    assert bus.losses.counts == {"refused in a worker thread: QueueFull": 1}


def test_a_pool_that_stops_while_the_bus_stays_open_closes_no_queue() -> None:
    """set_multiplicity waits for the old pool's workers, as before: a queue its
    receiver consumes is not closed (nothing closes on a bus that stays open), and the
    jobs sent meanwhile are consumed; closing the bus then ends that stop too."""
    bus = Bus(multiplicity=1, name="resize")
    jobs = Queue("job:*", bus=bus)
    done = _consuming(bus, jobs)
    resize = threading.Thread(target=bus.set_multiplicity, args=(2,), daemon=True)
    resize.start()
    for number in range(5):
        bus.twitter("job:run", number)
    wait_for(lambda: len(done) == 5, what="the jobs consumed")
    assert done == [0, 1, 2, 3, 4] and not jobs.closed and resize.is_alive()
    assert _closes_within(bus, WAIT)
    resize.join(WAIT)
    assert not resize.is_alive()


def test_a_wait_with_a_time_limit_is_left_to_end_and_what_comes_meanwhile_is_stored() -> None:
    """A receiver waiting with a timeout had its queue closed under it by the close 50 ms
    later, and the reply that a task queued behind it sent was dropped unseen."""
    bus = Bus(multiplicity=1, name="reply")
    results = Queue("result:*", bus=bus)
    outcome: list[str] = []
    waiting = threading.Event()

    def waiter(message: Message) -> None:
        waiting.set()
        try:
            results.get(timeout=0.3)
            outcome.append("got")
        except Empty:
            outcome.append("Empty")

    bus.subscribe("wait:x", waiter)
    bus.subscribe("reply:x", lambda message: bus.twitter("result:x", "reply"), weak=False)
    bus.twitter("wait:x")
    assert waiting.wait(WAIT)
    bus.twitter("reply:x")  # queued behind the waiter: the one worker is busy
    assert _closes_within(bus, WAIT)
    assert outcome == ["Empty"]
    assert results.get_nowait().args == ("reply",)
