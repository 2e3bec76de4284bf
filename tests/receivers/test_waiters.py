"""Queue.get_async with many waiting coroutines: each message wakes one waiter, oldest
first, and no wakeup is lost (a waiter cancelled after it was woken passes it on)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from helpers import WAIT, LoopThread, wait_for

import berrymq
from berrymq import Bus, Message


def test_a_hundred_consumers_drain_twenty_thousand_messages(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("work:*")
    total, consumers = 20_000, 100
    got: list[int] = []

    def produce() -> None:
        for i in range(total):
            berrymq.twitter("work:item", i)

    async def consume() -> None:
        while len(got) < total:
            try:
                message = await queue.get_async(timeout=0.5)
            except berrymq.Empty:
                continue
            got.append(message.args[0])

    async def main() -> None:
        tasks = [asyncio.create_task(consume()) for _ in range(consumers)]
        async with asyncio.timeout(WAIT):
            while len(queue._store.waiters) < consumers:  # every consumer waits
                await asyncio.sleep(0.001)
        producer = threading.Thread(target=produce, name="producer")
        producer.start()
        # generous: under a second here; waking every waiter per message took 15 to 35 s
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*tasks)
        await asyncio.to_thread(producer.join, WAIT)

    asyncio.run(main())
    assert sorted(got) == list(range(total))  # each taken once
    assert len(queue._store.waiters) == 0


def test_waiters_are_woken_one_per_message_oldest_first(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("line:*")

    async def main() -> None:
        tasks = []
        for _ in range(3):  # filed in this order
            tasks.append(asyncio.create_task(queue.get_async(timeout=WAIT)))
            await asyncio.sleep(0)
        waiting = list(queue._store.waiters)
        assert len(waiting) == 3
        berrymq.twitter("line:x", 1)  # on the loop's thread: the oldest is woken at once
        first = await tasks[0]
        assert first.args == (1,)
        assert not tasks[1].done() and not tasks[2].done()
        # the others were not woken: still the same waiters, in line
        assert list(queue._store.waiters) == waiting[1:]
        await asyncio.to_thread(berrymq.twitter, "line:x", 2)  # from another thread
        assert (await tasks[1]).args == (2,)
        assert not tasks[2].done()
        berrymq.twitter("line:x", 3)
        assert (await tasks[2]).args == (3,)

    asyncio.run(main())


def test_a_waiter_cancelled_after_its_wakeup_passes_it_on(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("pass:*")

    async def main() -> Message:
        first = asyncio.create_task(queue.get_async())
        await asyncio.sleep(0)
        second = asyncio.create_task(queue.get_async())  # no timeout: no last look
        await asyncio.sleep(0)
        assert len(queue._store.waiters) == 2
        berrymq.twitter("pass:x")  # wakes `first`, the oldest, at once ...
        first.cancel()  # ... which is cancelled before it could take the message
        with pytest.raises(asyncio.CancelledError):
            await first
        async with asyncio.timeout(WAIT):
            return await second  # the wakeup went on to `second`: the message is not stuck

    assert asyncio.run(main()).id == "pass:x"
    assert len(queue._store.waiters) == 0 and queue.qsize() == 0


def test_cancelling_many_waiters_loses_no_message(berrymq_bus: Bus) -> None:
    queue = berrymq.Queue("many:*")
    total = 2_000

    def produce() -> None:
        for i in range(total):
            berrymq.twitter("many:item", i)

    async def main() -> list[int]:
        got: list[int] = []

        async def consume() -> None:
            while True:
                got.append((await queue.get_async()).args[0])

        tasks = [asyncio.create_task(consume()) for _ in range(20)]
        producer = threading.Thread(target=produce, name="producer")
        producer.start()
        # cancel half of the consumers while messages come, whatever state they are in
        async with asyncio.timeout(WAIT):
            while len(got) < total // 4:
                await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        async with asyncio.timeout(WAIT):
            while len(got) + queue.qsize() < total or queue.qsize():
                await asyncio.sleep(0.001)
        for task in tasks[1::2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(producer.join, WAIT)
        return got

    # each taken once: none stuck in the store while the consumers left slept
    assert sorted(asyncio.run(main())) == list(range(total))


def test_a_waiter_on_a_stopped_loop_does_not_keep_a_message_from_a_live_one(
        berrymq_bus: Bus) -> None:
    """The oldest waiter's loop was stopped (not closed): its wakeup waits for the loop to
    run again, so the next waiter is woken too (the message sat in the queue while a live
    consumer waited, until its timeout)."""
    queue = berrymq.Queue("w:*")
    stopped, live = LoopThread("stopped-loop"), LoopThread("live-loop")
    try:
        asyncio.run_coroutine_threadsafe(queue.get_async(), stopped.loop)
        wait_for(lambda: len(queue._store.waiters) == 1, what="the first waiter")
        stopped.stop()  # stopped, not closed: it may run again
        taking = asyncio.run_coroutine_threadsafe(queue.get_async(timeout=WAIT), live.loop)
        wait_for(lambda: len(queue._store.waiters) == 2, what="the live waiter")
        berrymq.twitter("w:x", 1)
        assert taking.result(WAIT / 2).args == (1,)
    finally:
        live.close()
        stopped.close()
