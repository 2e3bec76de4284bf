"""Awaiting a queue (berrymq.receivers._awaiting): ``get_async`` and ``async for`` wait on the
loop without blocking it, time out, survive cancellation, end when the queue closes, and
share a queue's messages between consumers on several loops."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from helpers import WAIT

import berrymq
from berrymq import Bus


def test_get_async_waits_without_blocking_the_loop(berrymq_bus: Bus) -> None:
    async def main() -> None:
        queue = berrymq.Queue("task:*")
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                if ticks == 20:
                    # The loop is alive while get_async waits: now send, from a thread.
                    threading.Thread(target=berrymq.twitter, args=("task:run", 7)).start()
                await asyncio.sleep(0.001)

        tick_task = asyncio.create_task(ticker())
        message = await queue.get_async(timeout=WAIT)
        stop.set()
        await tick_task
        assert message.id == "task:run" and message.args == (7,)
        assert ticks >= 20
        assert len(queue._store.waiters) == 0

    asyncio.run(main())


def test_get_async_returns_a_stored_message_at_once(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("a:*")
    berrymq.twitter("a:b", 1)
    assert asyncio.run(queue.get_async(timeout=0)).args == (1,)


def test_get_async_timeout(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("nothing:*")

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(berrymq.Empty):
            await queue.get_async(timeout=0.05)
        with pytest.raises(berrymq.Empty):
            await queue.get_async(timeout=0)
        with pytest.raises(ValueError, match="timeout must be 0 or more"):
            await queue.get_async(timeout=-1)
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    assert 0.05 <= elapsed < WAIT
    assert len(queue._store.waiters) == 0


def test_cancelled_get_async_loses_nothing(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("c:*")

    async def main() -> None:
        task = asyncio.create_task(queue.get_async())
        await asyncio.sleep(0)
        assert len(queue._store.waiters) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(queue._store.waiters) == 0
        berrymq.twitter("c:d")
        assert (await queue.get_async(timeout=0)).id == "c:d"

    asyncio.run(main())


def test_async_for_until_closed(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("stream:*")

    def produce() -> None:
        for i in range(50):
            berrymq.twitter("stream:item", i)
        queue.close()

    async def main() -> list[int]:
        threading.Thread(target=produce).start()
        async with asyncio.timeout(WAIT):
            first = await queue.get_async(timeout=WAIT)  # get_async and async for mix
            got = [first.args[0]]
            async for message in queue:
                got.append(message.args[0])
        return got

    assert asyncio.run(main()) == list(range(50))
    with pytest.raises(berrymq.QueueClosed):
        asyncio.run(queue.get_async())


def test_closing_wakes_a_waiting_get_async(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("w:*")

    async def main() -> None:
        task = asyncio.create_task(queue.get_async())
        await asyncio.sleep(0)
        await asyncio.to_thread(queue.close)
        with pytest.raises(berrymq.QueueClosed):
            async with asyncio.timeout(WAIT):
                await task

    asyncio.run(main())


@pytest.mark.parametrize("two_loops", [True, False], ids=["two-loops", "one-loop"])
def test_shared_queue_async_consumers_take_each_message_once(
    berrymq_bus: Bus, loops: Any, two_loops: bool
) -> None:
    a = loops("consumer-a")
    b = loops("consumer-b") if two_loops else a
    q1 = berrymq.Queue("shared:*", shared=True)
    q2 = berrymq.Queue("shared:*", shared=True)
    total = 300

    async def consume(queue: berrymq.Queue, out: list[int]) -> None:
        while True:
            try:
                message = await queue.get_async(timeout=0.5)
            except berrymq.Empty:
                return
            out.append(message.args[0])

    got_a: list[int] = []
    got_b: list[int] = []
    fa = asyncio.run_coroutine_threadsafe(consume(q1, got_a), a.loop)
    fb = asyncio.run_coroutine_threadsafe(consume(q2, got_b), b.loop)
    for i in range(total):
        berrymq.twitter("shared:n", i)
    fa.result(WAIT)
    fb.result(WAIT)
    assert sorted(got_a + got_b) == list(range(total))
    assert got_a == sorted(got_a) and got_b == sorted(got_b)




@pytest.mark.parametrize("how", ["twitter", "talk reply"])
def test_a_full_queue_refuses_a_sender_on_a_running_loop_at_once(berrymq_bus: Bus, how: str) -> None:
    """A sender on the loop that waited for room blocked the loop, which may be what takes
    from the queue: with put_timeout=inf the loop hung for good (a coroutine's send, or an
    async receiver's talk reply, which is sent on its loop)."""
    async def main() -> tuple[list[int], list[str]]:
        stored = berrymq.Queue("r:*", maxsize=1, put_timeout=5)  # (inf hung the old code)
        refused: list[str] = []
        if how == "twitter":
            for i in range(2):
                try:
                    berrymq.twitter("r:x", i)
                except berrymq.QueueFull as exc:
                    refused.append(str(exc))
        else:
            async def answer(message: berrymq.Message) -> int:
                return int(message.args[0])

            berrymq_bus.subscribe("t:*", answer, weak=False)
            await asyncio.to_thread(lambda: [berrymq.talk("t:x", "r:x", i) for i in range(2)])
            reason = "dropped: a talk reply was refused"
            deadline = time.monotonic() + WAIT
            while not berrymq_bus.losses.counts.get(reason) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            refused = [reason] if berrymq_bus.losses.counts.get(reason) == 1 else []
        taken = [stored.get_nowait().args[0] for _ in range(stored.qsize())]
        return taken, refused

    started = time.monotonic()
    taken, refused = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert time.monotonic() - started < 2.5  # not put_timeout's 5 s with the loop blocked
    assert taken == [0]
    assert len(refused) == 1
    if how == "twitter":
        assert "refused at once: it was sent on a running event loop" in refused[0]
