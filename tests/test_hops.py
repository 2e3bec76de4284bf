"""berrymq._hops: the hop box, a one-element list per thread that holds the hop count of
the message being delivered. (What deliver puts in it and hands on: test_delivery.py;
that an async receiver's steps leave the sender's count alone: test_aio.py.)"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable
from typing import Any

from helpers import WAIT

from berrymq._hops import get_box, hop_box
from berrymq.bus import Bus


def in_a_new_thread(function: Callable[[], Any]) -> Any:
    """``function()`` in a thread of its own (so in an empty context): its result, or
    its exception raised here."""
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        return executor.submit(function).result(WAIT)


def test_a_thread_has_no_box_until_hop_box_makes_one_holding_zero() -> None:
    def first_use() -> tuple[Any, list[int], list[int], Any]:
        before = get_box(None)
        box = hop_box()
        return before, box, hop_box(), get_box(None)

    before, box, again, after = in_a_new_thread(first_use)
    assert before is None  # get_box(None): None before the thread's first delivery
    assert box[0] == 0
    assert again is box and after is box  # one box: later reads see what is put in it


def test_a_context_copied_into_another_thread_does_not_share_its_box() -> None:
    """asyncio.to_thread copies the caller's context, and with it the caller's box: the
    worker's deliveries saved and restored the caller's count, which stayed above 0, and
    the caller's later sends were dropped at the hop limit."""
    bus = Bus(name="copied")
    received: list[int] = []
    bus.subscribe("c:*", lambda message: received.append(message.hops), weak=False)
    here = hop_box()
    in_worker = threading.Event()
    worker_may_end = threading.Event()

    def worker() -> int:
        box = hop_box()  # the first use in this thread: a box of its own
        box[0] = 5  # as inside a receiver of a 5-hop message
        in_worker.set()
        assert worker_may_end.wait(WAIT)
        bus.twitter("c:worker")
        return box[0]

    context = contextvars.copy_context()  # what to_thread does
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        future = executor.submit(context.run, worker)
        assert in_worker.wait(WAIT)
        assert here[0] == 0  # the worker's count is not this thread's
        bus.twitter("c:here")
        worker_may_end.set()
        assert future.result(WAIT) == 5
    assert here[0] == 0 and sorted(received) == [0, 5]
    bus.close()


def test_each_thread_has_a_box_of_its_own() -> None:
    here = hop_box()
    outer = here[0]
    here[0] = 7
    both_set = threading.Barrier(2, timeout=WAIT)

    def count_in_thread(count: int) -> tuple[Any, int]:
        before = get_box(None)
        box = hop_box()
        box[0] = count
        both_set.wait()  # the other thread has set its own count meanwhile
        return before, box[0]

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as executor:
            first = executor.submit(count_in_thread, 1)
            second = executor.submit(count_in_thread, 2)
            assert first.result(WAIT) == (None, 1)  # an empty box, not this thread's 7
            assert second.result(WAIT) == (None, 2)
        assert here[0] == 7  # and theirs did not reach this thread
    finally:
        here[0] = outer


def test_asyncio_tasks_copied_from_one_context_share_its_box() -> None:
    def run() -> tuple[list[int], Any, int]:
        async def main() -> tuple[list[int], Any, int]:
            box = hop_box()

            async def task() -> Any:
                seen = get_box(None)
                hop_box()[0] = 3
                return seen

            seen = await asyncio.create_task(task())  # runs in a copy of main's context
            return box, seen, box[0]

        return asyncio.run(main())

    box, seen, count = in_a_new_thread(run)
    assert seen is box
    assert count == 3  # what the task put in the box, main reads
