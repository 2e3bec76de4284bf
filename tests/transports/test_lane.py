"""The delivery lane, the one hand-off from the I/O loop to receivers
(berrymq.transports.lane)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import berrymq
from berrymq.transports.ioloop import IOLoop
from berrymq.transports.lane import DeliveryLane


def test_lane_runs_work_in_order_off_the_io_thread(io: IOLoop) -> None:
    seen: list[tuple[int, str]] = []

    async def feed() -> None:
        for i in range(100):
            await io.lane.put(lambda i=i: seen.append((i, threading.current_thread().name)), 10)

    io.run(feed(), timeout=5)
    assert io.lane.wait_idle(5)
    assert [i for i, _ in seen] == list(range(100))
    assert {name for _, name in seen} == {"berrymq-delivery"}


def test_the_lane_numbers_work_and_says_which_numbers_ran(io: IOLoop) -> None:
    """A connection keeps the number of its last work and asks the lane whether it ran
    (a failing piece of work counts as run: it is over)."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    def fail() -> None:
        raise ValueError("counted all the same")

    async def feed() -> list[int]:
        return [await io.lane.put(work) for work in (fail, hold, lambda: None)]

    first, held, last = io.run(feed(), timeout=5)
    assert (held, last) == (first + 1, first + 2) and io.lane.offered == last
    assert started.wait(5)
    assert io.lane.ran(0) and io.lane.ran(first)
    assert not io.lane.ran(held) and not io.lane.ran(last)
    release.set()
    assert io.lane.wait_idle(5)
    assert io.lane.ran(last)


def test_a_turn_returns_once_the_work_put_before_it_ran(io: IOLoop) -> None:
    """What must come after work already handed over (an ask after a message on one
    connection) waits for ``turn()``."""
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold() -> None:
        started.set()
        release.wait(10)
        ran.append("held")

    async def hold_then_turn() -> list[str]:
        await io.lane.put(hold)
        turn = asyncio.ensure_future(io.lane.turn())
        await asyncio.to_thread(started.wait, 10)
        assert not turn.done()
        release.set()
        await turn
        return list(ran)

    assert io.run(hold_then_turn(), timeout=10) == ["held"]

def test_a_full_lane_makes_the_producer_wait_until_work_drains(io: IOLoop) -> None:
    lane = DeliveryLane(io, max_items=3, max_bytes=1000)
    release = threading.Event()
    done: list[int] = []
    state: dict[str, object] = {}

    async def feed() -> None:
        await lane.put(release.wait)  # occupies the thread
        for i in range(3):
            await lane.put(lambda i=i: done.append(i), 1)
        state["queued"] = lane.pending
        put_more = asyncio.ensure_future(lane.put(lambda: done.append(3), 1))
        await asyncio.sleep(0)
        state["blocked"] = not put_more.done()
        release.set()
        await asyncio.wait_for(put_more, 5)

    io.run(feed(), timeout=10)
    assert state["queued"] == (3, 3)
    assert state["blocked"] is True
    assert lane.wait_idle(5)
    assert done == [0, 1, 2, 3]
    lane.stop()


def test_the_byte_bound_holds_but_one_oversized_item_still_passes(io: IOLoop) -> None:
    lane = DeliveryLane(io, max_items=100, max_bytes=10)
    release = threading.Event()
    state: dict[str, object] = {}

    async def feed() -> None:
        await lane.put(release.wait)
        await lane.put(lambda: None, 50)  # alone in the queue: accepted
        second = asyncio.ensure_future(lane.put(lambda: None, 1))
        await asyncio.sleep(0)
        state["second waits"] = not second.done()
        release.set()
        await asyncio.wait_for(second, 5)

    io.run(feed(), timeout=10)
    assert state["second waits"] is True
    assert lane.wait_idle(5)
    lane.stop()


def test_a_failing_piece_of_work_is_logged_and_the_lane_goes_on(io: IOLoop, caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()

    def fail() -> None:
        raise ValueError("boom")

    async def feed() -> None:
        await io.lane.put(fail)
        await io.lane.put(done.set)

    io.run(feed(), timeout=5)
    assert done.wait(5)
    assert "delivering a message from the network failed" in caplog.text


def test_an_idle_lane_wakes_for_each_piece_of_work_and_stops_when_idle(io: IOLoop) -> None:
    # The idle thread waits for a token: every offer to an idle lane must wake it once,
    # and stop() must wake it too (a lost token would hang wait_idle or stop here).
    lane = DeliveryLane(io)
    ran: list[int] = []

    async def offer(i: int) -> bool:
        return lane.offer(lambda: ran.append(i))

    for i in range(200):
        assert io.run(offer(i), timeout=5)
        assert lane.wait_idle(5), f"piece {i} did not run"
    assert ran == list(range(200))
    lane.stop(5)
    assert not lane._thread.is_alive()


def test_a_lane_knows_its_own_thread_by_the_name_it_was_given(io: IOLoop) -> None:
    lane = DeliveryLane(io, name="test-lane")
    seen: list[tuple[str, bool]] = []

    async def offer() -> bool:
        return lane.offer(lambda: seen.append((threading.current_thread().name, lane.in_lane())))

    assert io.run(offer(), timeout=5)
    assert lane.wait_idle(5)
    assert seen == [("test-lane", True)]
    assert not lane.in_lane()
    lane.stop(5)


def test_a_full_blocking_queue_refuses_a_lane_s_message_at_once(io: IOLoop) -> None:
    """A full bounded Queue (on_full="block") makes a sender wait for room, but not the
    lane, which carries every message of a transport: its message is refused at once,
    saying why, and the next piece of work runs (it waited put_timeout for each refusal,
    and every other receiver and client waited behind it)."""
    with berrymq.Bus(name="lane") as bus:
        queue = berrymq.Queue("q:*", maxsize=1, put_timeout=30, bus=bus)
        bus.twitter("q:x")  # full now
        outcome: list[BaseException | str] = []

        def deliver() -> None:
            try:
                bus.twitter("q:x")
            except berrymq.QueueFull as exc:
                outcome.append(exc)

        async def feed() -> None:
            await io.lane.put(deliver, 10)
            await io.lane.put(lambda: outcome.append("next"), 10)

        io.run(feed(), timeout=5)
        assert io.lane.wait_idle(10)  # not 30 s
        refusal, after = outcome
        assert isinstance(refusal, berrymq.QueueFull) and after == "next"
        assert "refused at once: it came through a delivery lane" in str(refusal)
        assert queue.qsize() == 1


def test_work_a_stopping_lane_cannot_run_in_time_is_reported_not_run(
        io: IOLoop, caplog: pytest.LogCaptureFixture) -> None:
    """At exit the lane runs what is queued for a bounded time; what a busy receiver left
    waiting then is dropped with one error line saying how much (it went silently)."""
    release, ran = threading.Event(), []

    async def feed() -> None:
        await io.lane.put(lambda: release.wait(10), 10)
        for i in range(3):
            await io.lane.put(lambda i=i: ran.append(i), 100)

    io.run(feed(), timeout=5)
    lane = io.lane
    try:
        with caplog.at_level(logging.ERROR, logger="berrymq.io"):
            lane.stop(timeout=0.2)
    finally:
        release.set()
    assert [r.getMessage() for r in caplog.records] == [
        "berrymq-delivery stopped with 3 piece(s) of work (300 bytes) not run after 0.2s, a "
        "receiver still busy: the messages from other processes in them were not delivered"]
    lane.stop(timeout=5)
    assert ran == []
