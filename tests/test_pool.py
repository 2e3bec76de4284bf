"""SPEC 6 (threads): the worker pool and thread safety."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from helpers import WAIT

import berrymq
from berrymq import (
    Bus,
    Message,
    Queue,
    following_function,
    regist_function,
    set_multiplicity,
    twitter,
    unfollow,
)


def test_multiplicity_runs_receivers_on_workers_and_returns_at_once(berrymq_bus: Bus) -> None:
    release = threading.Event()
    started = threading.Event()
    threads: list[str] = []

    def slow(message: Message) -> None:
        threads.append(threading.current_thread().name)
        started.set()
        assert release.wait(10)

    regist_function("slow:*", slow)
    set_multiplicity(2)
    twitter("slow:x")  # returns while the receiver still waits
    assert started.wait(10)
    assert not release.is_set()
    release.set()
    assert berrymq_bus.join(10)
    assert threads[0].startswith("berrymq-worker")


def test_slow_receivers_overlap(berrymq_bus: Bus) -> None:
    both = threading.Barrier(2, timeout=10)
    done: list[str] = []

    def waits_for_the_other(message: Message) -> None:
        both.wait()  # only passes if two receivers run at the same time
        done.append(message.id)

    regist_function("o:*", waits_for_the_other)
    set_multiplicity(2)
    twitter("o:1")
    twitter("o:2")
    assert berrymq_bus.join(10)
    assert sorted(done) == ["o:1", "o:2"]


def test_back_to_synchronous_delivers_everything(berrymq_bus: Bus) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def receiver(message: Message) -> None:
        with lock:
            got.append(message.args[0])

    regist_function("n:*", receiver)
    set_multiplicity(3)
    for n in range(500):
        twitter("n:x", n)
    set_multiplicity(0)  # nothing handed to the pool is lost
    assert sorted(got) == list(range(500))
    got.clear()
    twitter("n:x", -1)
    assert got == [-1]  # synchronous again


def test_negative_multiplicity() -> None:
    bus = Bus()
    with pytest.raises(ValueError, match="0 or more"):
        bus.set_multiplicity(-1)
    with pytest.raises(TypeError):
        bus.set_multiplicity(1.5)  # type: ignore[arg-type]
    assert bus.multiplicity == 0


def test_talk_with_pool(berrymq_bus: Bus) -> None:
    q = Queue("reply:*")
    regist_function("ask:*", lambda m: m.args[0] * 2, weak=False)
    set_multiplicity(2)
    berrymq_bus.talk("ask:x", "reply:x", 21)
    assert q.get(timeout=10).args == (42,)


def test_pool_receiver_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus(multiplicity=1)

    def bad(message: Message) -> None:
        raise RuntimeError("in worker")

    bus.subscribe("e:*", bad)
    bus.twitter("e:x")
    assert bus.join(10)
    assert "in worker" in caplog.text
    bus.close()


def test_concurrent_send_subscribe_cancel() -> None:
    bus = Bus(raise_errors=True)
    counts = {"a": 0}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def counted(message: Message) -> None:
        with lock:
            counts["a"] += 1

    bus.subscribe("hot:*", counted)

    def sender() -> None:
        try:
            for _ in range(3000):
                bus.twitter("hot:x")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def churner() -> None:
        try:
            while not stop.is_set():
                handle = bus.subscribe("hot:*", lambda m: None, weak=False)
                bus.subscribe(f"other{id(handle)}:*", lambda m: None, weak=False).cancel()
                handle.cancel()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    senders = [threading.Thread(target=sender) for _ in range(3)]
    churn = threading.Thread(target=churner)
    churn.start()
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(60)
    stop.set()
    churn.join(60)
    assert errors == []
    assert counts["a"] == 9000  # the steady receiver got every message
    bus.close()


# -- SPEC 6, black-box: concurrency --------------------------------------------------------

def test_set_multiplicity_returns_at_once_and_overlaps(berrymq_bus: Bus) -> None:
    berrymq.set_multiplicity(2)
    release = threading.Event()
    barrier = threading.Barrier(2, timeout=WAIT)
    threads: list[int] = []
    done: list[str] = []

    def slow(message: Message) -> None:
        threads.append(threading.get_ident())
        barrier.wait()  # only passes if two receivers run at the same time
        release.wait(WAIT)
        done.append(message.id)

    regist_function("slow:*", slow, weak=False)
    twitter("slow:a")
    twitter("slow:b")  # returns although both receivers are still blocked
    assert done == []
    release.set()
    assert berrymq.join(WAIT)
    assert sorted(done) == ["slow:a", "slow:b"]
    assert threading.get_ident() not in threads


def test_set_multiplicity_zero_and_negative(berrymq_bus: Bus) -> None:
    berrymq.set_multiplicity(3)
    berrymq.set_multiplicity(0)
    where: list[int] = []
    regist_function("z:*", lambda m: where.append(threading.get_ident()), weak=False)
    twitter("z:x")
    assert where == [threading.get_ident()]  # back in the sender's thread, synchronously
    with pytest.raises(ValueError):
        berrymq.set_multiplicity(-1)
    twitter("z:x")
    assert len(where) == 2  # the failed call changed nothing


def test_set_multiplicity_change_loses_nothing(berrymq_bus: Bus) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def receiver(message: Message) -> None:
        with lock:
            got.append(message.args[0])

    regist_function("m:*", receiver, weak=False)
    berrymq.set_multiplicity(2)
    for n in range(200):
        twitter("m:n", n)
    berrymq.set_multiplicity(0)  # everything handed to the old pool is delivered
    assert sorted(got) == list(range(200))


def test_set_multiplicity_while_sending_loses_nothing(berrymq_bus: Bus) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def receiver(message: Message) -> None:
        with lock:
            got.append(message.args[0])

    regist_function("mx:*", receiver, weak=False)
    total = 2000
    started = threading.Event()
    failures: list[BaseException] = []

    def sender() -> None:
        started.set()
        try:
            for n in range(total):
                twitter("mx:n", n)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=sender)
    thread.start()
    assert started.wait(WAIT)
    for size in (2, 0, 1, 3, 0, 2, 0):
        berrymq.set_multiplicity(size)
    thread.join(WAIT * 2)
    assert not thread.is_alive()
    assert berrymq.join(WAIT)
    assert failures == []
    assert sorted(got) == list(range(total))


def test_async_receiver_and_awaitable_queue(berrymq_bus: Bus) -> None:
    async def main() -> list[Any]:
        got: list[Any] = []
        done = asyncio.Event()

        @following_function("aio:*")
        async def receiver(message: Message) -> None:
            await asyncio.sleep(0)
            got.append(message.args[0])
            done.set()

        q = Queue("aio:*")
        twitter("aio:x", 7)
        message = await q.get_async(timeout=WAIT)
        await asyncio.wait_for(done.wait(), WAIT)
        return [got, message.args]

    assert asyncio.run(main()) == [[7], (7,)]


@pytest.mark.parametrize("workers", [0, 2])
def test_thread_safety_under_concurrent_use(berrymq_bus: Bus, workers: int) -> None:
    berrymq.set_multiplicity(workers)
    counted: list[int] = []
    lock = threading.Lock()

    def steady(message: Message) -> None:
        with lock:
            counted.append(message.args[0])

    regist_function("load:*", steady, weak=False)
    senders, per_sender = 4, 300
    failures: list[BaseException] = []
    start = threading.Barrier(senders + 2, timeout=WAIT)

    def send(index: int) -> None:
        try:
            start.wait()
            for n in range(per_sender):
                twitter("load:item", index * per_sender + n)
        except BaseException as exc:
            failures.append(exc)

    def churn() -> None:
        try:
            start.wait()
            for n in range(150):
                def extra(message: Message) -> None:
                    pass
                handle = regist_function(f"load:{n % 7}", extra, weak=False)
                queue = Queue("load:*")
                regist_function("load:*", extra, weak=False)
                handle.cancel()
                queue.close()
                assert unfollow(extra) == 1
        except BaseException as exc:
            failures.append(exc)

    def register() -> None:
        try:
            start.wait()
            for _ in range(150):
                def temp(message: Message) -> None:
                    pass
                regist_function("*", temp, weak=True)
                del temp
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    threads += [threading.Thread(target=churn), threading.Thread(target=register)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not any(t.is_alive() for t in threads)
    assert berrymq.join(WAIT)
    assert failures == []
    assert sorted(counted) == list(range(senders * per_sender))
