"""SPEC 6 (threads): the worker pool and thread safety."""

from __future__ import annotations

import threading

import pytest

from berrymq import Bus, Message, Queue, regist_function, set_multiplicity, twitter


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
