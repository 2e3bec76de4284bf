"""WaitThreads (berrymq.wait_threads): the pool for work that may wait, which gives idle
threads back and drops cancelled work at once."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import weakref
from collections.abc import Iterator

import pytest
from helpers import WAIT, wait_for

from berrymq.wait_threads import WaitThreads


@pytest.fixture
def pool() -> Iterator[WaitThreads]:
    threads = WaitThreads(2, "test-wait", idle_exit=0.2)
    yield threads
    threads.shutdown()


def test_work_runs_and_hands_back_its_result_or_exception(pool: WaitThreads) -> None:
    assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(WAIT) == 5
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(WAIT)


def test_no_more_threads_than_the_maximum_and_queued_work_waits_its_turn(
        pool: WaitThreads) -> None:
    release = threading.Event()
    names: list[str] = []

    def hold(n: int) -> int:
        names.append(threading.current_thread().name)
        release.wait(WAIT)
        return n

    futures = [pool.submit(hold, n) for n in range(5)]
    assert pool.threads == 2
    release.set()
    assert [f.result(WAIT) for f in futures] == list(range(5))
    assert set(names) == {"test-wait-1", "test-wait-2"}


def test_an_idle_thread_takes_the_next_work_instead_of_a_new_one(
        pool: WaitThreads) -> None:
    first = pool.submit(threading.current_thread)
    thread = first.result(WAIT)
    wait_for(lambda: pool.idle == 1, WAIT, "the thread to wait for work")
    assert pool.submit(threading.current_thread).result(WAIT) is thread
    assert pool.threads == 1


def test_saturated_says_whether_work_submitted_now_would_wait(pool: WaitThreads) -> None:
    """Only while every thread it may run is busy (not merely started, nor while one idles:
    a node tells an ask not started in time because of busy threads by it)."""
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> None:
        started.release()
        release.wait(WAIT)

    assert not pool.saturated  # no thread at all
    first = pool.submit(hold)
    assert started.acquire(timeout=WAIT)
    assert not pool.saturated  # one of two busy
    second = pool.submit(hold)
    assert started.acquire(timeout=WAIT)
    assert pool.saturated
    release.set()
    first.result(WAIT)
    second.result(WAIT)
    wait_for(lambda: pool.idle > 0, WAIT, "a thread to be idle")
    assert not pool.saturated


def test_work_cancelled_while_it_waits_leaves_the_queue_with_its_arguments(
        pool: WaitThreads) -> None:
    """An ask answered by its timeout while every thread was busy: its work, and the
    arguments it holds, are dropped at once, not kept until a thread is free."""
    release = threading.Event()
    busy = [pool.submit(release.wait, WAIT) for _ in range(2)]

    class Argument:
        pass

    arguments = [Argument() for _ in range(100)]
    alive = [weakref.ref(argument) for argument in arguments]
    waiting = [pool.submit(id, argument) for argument in arguments]
    del arguments
    assert all(future.cancel() for future in waiting)
    assert not any(ref() for ref in alive), "cancelled work still held by the queue"
    release.set()
    assert all(future.result(WAIT) for future in busy)
    assert pool.submit(lambda: 7).result(WAIT) == 7


def test_idle_threads_end(pool: WaitThreads) -> None:
    futures = [pool.submit(threading.current_thread) for _ in range(4)]
    threads = {f.result(WAIT) for f in futures}
    wait_for(lambda: pool.threads == 0, WAIT, "idle threads to end")
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert pool.submit(lambda: 7).result(WAIT) == 7  # and new ones start for new work


def test_asyncio_runs_blocking_calls_on_it(pool: WaitThreads) -> None:
    async def main() -> str:
        return await asyncio.get_running_loop().run_in_executor(
            pool, lambda: threading.current_thread().name)

    assert asyncio.run(main()).startswith("test-wait-")


def test_after_shutdown_no_work_is_taken_and_threads_end() -> None:
    long_idle = WaitThreads(1, "test-idle", idle_exit=3600)
    assert long_idle.submit(lambda: 1).result(WAIT) == 1
    long_idle.shutdown()
    wait_for(lambda: long_idle.threads == 0, WAIT, "the idle thread to end at shutdown")
    with pytest.raises(RuntimeError, match="after shutdown"):
        long_idle.submit(lambda: 2)


def test_work_given_as_an_idle_thread_times_out_starts_no_thread_beside_it() -> None:
    """Sequential work, each given about when the one idle thread's wait ends: that thread
    (or, once it ended, one new one) takes it, never a second beside it. (A wake-up lost to
    a timeout once made the pool count an idle thread as told of work: it then started
    threads beside idle ones, or left work waiting for a timeout.) The pause before each
    submit is the point of the test, not a wait for something: it lands the submit on the
    timeout; the outcome does not depend on where it lands."""
    pool = WaitThreads(2, "test-race", idle_exit=0.002)
    rng = random.Random(9)
    try:
        for n in range(1000):
            assert pool.submit(lambda n=n: n).result(WAIT) == n
            assert pool.threads <= 1, f"round {n}: {pool.threads} threads for one at a time"
            time.sleep(rng.uniform(0.0015, 0.0025))
    finally:
        pool.shutdown()
