"""asyncio: async receivers on their own loops and ask_async (locally and to a peer node);
awaiting a queue is tests/receivers/test_awaiting.py.

Real event loops, real threads: senders in other threads, several loops at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from helpers import WAIT, Child, HeldReceiver

import berrymq
from berrymq import Bus, Follower, Message, ReplyError, following
from berrymq._hops import hop_box
from berrymq.ask import ASK_EXECUTOR, ask_async_on


def send_from_thread(target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target(*args, **kwargs)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, name="sender")
    t.start()
    t.join(WAIT)
    assert not t.is_alive()
    if errors:
        raise errors[0]


# -- async receivers -------------------------------------------------------------------------


def test_async_function_runs_on_its_loop_whichever_thread_sends(berrymq_bus: Bus) -> None:
    seen: list[tuple[str, str, Any, bool]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.current_thread().name

        @berrymq.following_function("job:*")
        async def on_job(message: Message) -> None:
            await asyncio.sleep(0)  # a real coroutine: it suspends
            seen.append((message.id, threading.current_thread().name, message.args,
                         asyncio.get_running_loop() is loop))

        async def until(count: int) -> None:
            async with asyncio.timeout(WAIT):
                while len(seen) < count:
                    await asyncio.sleep(0.01)

        await asyncio.to_thread(send_from_thread, berrymq.twitter, "job:a", 1)
        await asyncio.to_thread(berrymq.twitter, "job:b", 2)
        berrymq.twitter("job:c", 3)
        await until(3)
        assert [s[0] for s in seen] == ["job:a", "job:b", "job:c"]
        assert [s[2] for s in seen] == [(1,), (2,), (3,)]
        # three sender threads at once
        senders = [threading.Thread(target=berrymq.twitter, args=("job:d", n)) for n in range(3)]
        for sender in senders:
            sender.start()
        await until(6)
        for sender in senders:
            await asyncio.to_thread(sender.join, WAIT)
        assert sorted(s[2] for s in seen[3:]) == [(0,), (1,), (2,)]
        assert {s[1] for s in seen} == {loop_thread}
        assert all(s[3] for s in seen)  # on the very loop that registered the receiver

    asyncio.run(main())


def test_sending_from_the_loop_thread_does_not_wait_for_the_coroutine(berrymq_bus: Bus) -> None:
    async def main() -> None:
        release = asyncio.Event()
        finished = asyncio.Event()

        async def slow(message: Message) -> None:
            await release.wait()
            finished.set()

        berrymq.regist_function("slow:go", slow)
        started = time.monotonic()
        berrymq.twitter("slow:go")  # returns although the receiver waits for `release`
        # waiting for the receiver would never return (it needs the loop this thread runs):
        # returning, with the receiver not finished, is the point; the bound only catches
        # a wait of seconds, with room for a loaded machine (it was 1 s)
        assert time.monotonic() - started < WAIT / 2
        assert not finished.is_set()
        release.set()
        async with asyncio.timeout(WAIT):
            await finished.wait()

    asyncio.run(main())


def test_messages_reach_an_async_receiver_in_sending_order(berrymq_bus: Bus) -> None:
    async def main() -> None:
        got: list[int] = []
        done = asyncio.Event()

        async def rx(message: Message) -> None:
            got.append(message.args[0])
            if len(got) == 200:
                done.set()

        berrymq.regist_function("seq:n", rx)

        def send_many() -> None:
            for i in range(100):
                berrymq.twitter("seq:n", i)

        await asyncio.to_thread(send_many)
        for i in range(100, 200):
            berrymq.twitter("seq:n", i)
        async with asyncio.timeout(WAIT):
            await done.wait()
        assert got == list(range(200))

    asyncio.run(main())


def test_follower_async_methods(berrymq_bus: Bus) -> None:
    async def main() -> None:
        done = asyncio.Event()

        class Worker(metaclass=Follower):
            def __init__(self) -> None:
                self.got: list[str] = []
                self.threads: set[str] = set()

            @following("work:*")
            async def on_work(self, message: Message) -> None:
                self.got.append(message.id)
                self.threads.add(threading.current_thread().name)
                if len(self.got) == 2:
                    done.set()

        worker = Worker()
        await asyncio.to_thread(berrymq.twitter, "work:one")
        berrymq.twitter("work:two")
        async with asyncio.timeout(WAIT):
            await done.wait()
        assert worker.got == ["work:one", "work:two"]
        assert worker.threads == {threading.current_thread().name}
        assert berrymq.unfollow(worker) == 1

    asyncio.run(main())


def test_receivers_on_several_loops_each_run_on_their_own(berrymq_bus: Bus, loops: Any) -> None:
    a, b = loops("loop-a"), loops("loop-b")
    seen: dict[str, list[str]] = {"a": [], "b": []}
    done = {"a": threading.Event(), "b": threading.Event()}

    def make(key: str) -> Callable[[Message], Coroutine[Any, Any, None]]:
        async def rx(message: Message) -> None:
            seen[key].append(threading.current_thread().name)
            if len(seen[key]) == 4:
                done[key].set()
        return rx

    rx_a, rx_b = make("a"), make("b")

    async def register(rx: Callable[[Message], Any]) -> None:
        berrymq.regist_function("multi:*", rx)

    a.run(register(rx_a))
    b.run(register(rx_b))
    # Two sender threads at once, and the main thread.
    threads = [threading.Thread(target=berrymq.twitter, args=("multi:x",)) for _ in range(3)]
    for t in threads:
        t.start()
    berrymq.twitter("multi:y")
    for t in threads:
        t.join(WAIT)
    assert done["a"].wait(WAIT) and done["b"].wait(WAIT)
    assert seen["a"] == ["loop-a"] * 4
    assert seen["b"] == ["loop-b"] * 4


def test_async_receiver_is_held_weakly(berrymq_bus: Bus, loops: Any) -> None:
    lt = loops("weak-loop")
    calls: list[str] = []
    ran = threading.Event()

    async def make_and_register() -> weakref.ref[Any]:
        async def rx(message: Message) -> None:
            calls.append(message.id)
            ran.set()

        berrymq.regist_function("weak:*", rx)
        holder.append(rx)
        return weakref.ref(rx)

    holder: list[Any] = []
    ref = lt.run(make_and_register())
    # Alive while the user keeps it: the wrapper did not die at once.
    gc.collect()
    berrymq.twitter("weak:one")
    assert ran.wait(WAIT)
    assert calls == ["weak:one"]
    assert len(berrymq_bus.route("weak:x")) == 1
    # The wrapper does not keep it alive: dropping the user's reference ends it.
    holder.clear()
    gc.collect()
    assert ref() is None
    berrymq.twitter("weak:two")
    assert berrymq_bus.route("weak:x") == ()
    assert lt.run(asyncio.sleep(0, "flushed")) == "flushed"
    assert calls == ["weak:one"]


def test_async_closure_with_weak_false_stays(berrymq_bus: Bus, loops: Any) -> None:
    lt = loops("strong-loop")
    got: concurrent.futures.Future[str] = concurrent.futures.Future()

    async def register() -> None:
        async def rx(message: Message) -> None:
            got.set_result(message.id)

        berrymq.regist_function("strong:*", rx, weak=False)

    lt.run(register())
    gc.collect()
    berrymq.twitter("strong:x")
    assert got.result(WAIT) == "strong:x"


def test_registering_outside_a_running_loop_is_a_clear_error(berrymq_bus: Bus) -> None:
    async def rx(message: Message) -> None:
        pass

    with pytest.raises(RuntimeError, match=r"must be registered from a running asyncio event loop"):
        berrymq.regist_function("x:y", rx)
    assert berrymq_bus.subscriptions() == []


def test_error_in_async_receiver_is_logged(berrymq_bus: Bus) -> None:
    class Flag(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.event = threading.Event()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)
            self.event.set()

    flag = Flag()
    logger = logging.getLogger("berrymq")
    logger.addHandler(flag)
    try:
        async def main() -> None:
            async def broken(message: Message) -> None:
                raise KeyError("boom")

            berrymq.regist_function("err:*", broken)
            await asyncio.to_thread(berrymq.twitter, "err:x")  # does not raise in the sender
            async with asyncio.timeout(WAIT):
                while not flag.event.is_set():
                    await asyncio.sleep(0.01)

        asyncio.run(main())
    finally:
        logger.removeHandler(flag)
    record = flag.records[0]
    assert record.levelno == logging.ERROR
    assert "broken" in record.getMessage() and "err:x" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


def test_receiver_of_a_closed_loop_is_reported_and_unsubscribed(berrymq_bus: Bus) -> None:
    async def rx(message: Message) -> None:
        pass

    async def register() -> None:
        berrymq.regist_function("gone:*", rx)

    asyncio.run(register())  # the loop is closed when run() returns
    with pytest.raises(ExceptionGroup) as info:
        berrymq.twitter("gone:x")
    assert "event loop of async receiver" in str(info.value.exceptions[0])
    assert "gone:x" in str(info.value.exceptions[0])
    assert berrymq_bus.subscriptions() == []


def test_hop_limit_cuts_a_loop_through_an_async_receiver(plugins_bus: Bus) -> None:
    dropped = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "hop limit" in record.getMessage():
                dropped.set()

    handler = Watch()
    logging.getLogger("berrymq").addHandler(handler)
    calls: list[int] = []
    try:
        async def main() -> None:
            async def echo(message: Message) -> None:
                calls.append(message.hops)
                await asyncio.sleep(0)  # other steps may run in between
                plugins_bus.twitter("echo:again")

            plugins_bus.subscribe("echo:*", echo)
            await asyncio.to_thread(plugins_bus.twitter, "echo:start")
            async with asyncio.timeout(WAIT):
                while not dropped.is_set():
                    await asyncio.sleep(0.01)

        asyncio.run(main())
    finally:
        logging.getLogger("berrymq").removeHandler(handler)
    assert calls == list(range(plugins_bus.hop_limit))


@pytest.fixture
def plugins_bus(berrymq_plugin_host: Any) -> Iterator[Bus]:
    bus = Bus(plugins=berrymq_plugin_host, hop_limit=6, name="hops")
    yield bus
    bus.close()


def test_talk_sends_the_async_receivers_result_when_done(berrymq_bus: Bus) -> None:
    async def main() -> None:
        async def double(message: Message) -> int:
            await asyncio.sleep(0)
            return int(message.args[0]) * 2

        berrymq.regist_function("calc:double", double)
        answers = berrymq.Queue("calc:answer")
        await asyncio.to_thread(berrymq.talk, "calc:double", "calc:answer", 21)
        berrymq.talk("calc:double", "calc:answer", 5)
        first = await answers.get_async(timeout=WAIT)
        second = await answers.get_async(timeout=WAIT)
        assert {first.args[0], second.args[0]} == {42, 10}

    asyncio.run(main())


# -- ask and ask_async -------------------------------------------------------------------------


def test_ask_async_collects_sync_and_async_replies_in_order(berrymq_bus: Bus) -> None:
    async def main() -> None:
        def plain(message: Message) -> str:
            return "plain"

        async def coro(message: Message) -> str:
            await asyncio.sleep(0)
            return f"async {message.args[0]}"

        async def broken(message: Message) -> None:
            raise ValueError("no")

        berrymq.regist_function("q:*", plain)
        berrymq.regist_function("q:*", coro)
        berrymq.regist_function("q:*", broken)
        replies = await berrymq.ask_async("q:what", 1, timeout=WAIT)
        assert replies[:2] == ["plain", "async 1"]
        assert isinstance(replies[2], berrymq.ReplyError)
        assert replies[2].exception_type == "ValueError" and replies[2].message == "no"
        assert "broken" in replies[2].receiver
        assert await berrymq.ask_async("nobody:home") == []

    asyncio.run(main())


def test_ask_async_does_not_block_the_loop(berrymq_bus: Bus) -> None:
    async def main() -> None:
        gate = threading.Event()

        def waits_for_the_loop(message: Message) -> str:
            # Only a coroutine on the loop sets the gate: this would deadlock if the ask
            # ran on the loop's thread.
            assert gate.wait(WAIT)
            return "through"

        berrymq.regist_function("gate:*", waits_for_the_loop)

        async def open_gate() -> None:
            await asyncio.sleep(0.01)
            gate.set()

        opener = asyncio.create_task(open_gate())
        assert await berrymq.ask_async("gate:x", timeout=WAIT) == ["through"]
        await opener

    asyncio.run(main())


async def _heartbeat(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


def test_ask_async_with_a_peer_does_not_block_the_loop_and_honours_timeout(
        node: tuple[str, Child]) -> None:
    async def main() -> None:
        @berrymq.following_function("calc:add")
        async def local_async(message: Message) -> str:
            await asyncio.sleep(0.05)
            return "async-local"

        stop = asyncio.Event()
        gaps: list[float] = []
        beat = asyncio.create_task(_heartbeat(stop, gaps))
        replies = await berrymq.ask_async("calc:add", 4, 5, timeout=10)
        assert replies == ["async-local", 9, "second"]
        start = time.monotonic()
        slow = await berrymq.ask_async("calc:slow", 2.0, timeout=0.5)
        assert time.monotonic() - start < 1.5
        assert len(slow) == 1 and isinstance(slow[0], ReplyError)
        # TimeoutError, or TransportError when the link's own deadline wins the race (as in
        # test_ask.py's test_ask_timeout_honoured_for_a_slow_peer)
        assert slow[0].exception_type in ("TimeoutError", "TransportError")
        stop.set()
        await beat
        assert max(gaps) < 0.15, f"event loop blocked for {max(gaps):.3f}s"
        del local_async

    asyncio.run(main())


def test_ask_async_waits_for_receivers_on_other_loops(berrymq_bus: Bus, loops: Any) -> None:
    other = loops("other-loop")

    async def register() -> None:
        async def rx(message: Message) -> str:
            return threading.current_thread().name

        berrymq.regist_function("where:*", rx, weak=False)

    other.run(register())

    async def main() -> list[Any]:
        return await berrymq.ask_async("where:x")

    assert asyncio.run(main()) == ["other-loop"]


def test_blocking_ask_from_another_thread_gets_async_replies_and_timeouts(
    berrymq_bus: Bus, loops: Any
) -> None:
    lt = loops("replier")
    never = asyncio.Event()

    async def register() -> None:
        async def quick(message: Message) -> int:
            await asyncio.sleep(0.01)
            return int(message.args[0]) * 2

        async def broken(message: Message) -> int:
            raise OSError("async broke")

        async def stuck(message: Message) -> int:
            await never.wait()
            return 2

        berrymq.regist_function("r:*", quick, weak=False)
        berrymq.regist_function("r:*", broken, weak=False)
        berrymq.regist_function("r:*", stuck, weak=False)

    lt.run(register())
    started = time.monotonic()
    replies = berrymq.ask("r:x", 21, timeout=0.2)
    assert time.monotonic() - started < WAIT
    assert replies[0] == 42
    assert isinstance(replies[1], ReplyError) and replies[1].exception_type == "OSError"
    assert replies[1].message == "async broke"
    assert isinstance(replies[2], ReplyError)
    assert replies[2].exception_type == "TimeoutError"
    assert replies[2].message == "no reply within 0.2s"  # the ask's timeout, not "0s"
    assert len(replies) == 3


def test_blocking_ask_on_the_receivers_own_loop_gives_an_error_entry(berrymq_bus: Bus) -> None:
    async def main() -> list[Any]:
        async def rx(message: Message) -> int:
            return 1

        berrymq.regist_function("own:*", rx)
        return berrymq.ask("own:x", timeout=1)

    [reply] = asyncio.run(main())
    assert isinstance(reply, berrymq.ReplyError)
    assert "ask_async" in reply.message


def test_a_blocking_ask_from_a_loop_thread_keeps_its_timeout(berrymq_bus: Bus) -> None:
    """From a thread running an event loop as from any other: a slow plain receiver gives
    a TimeoutError entry at the timeout, and the receivers after it never run (they ran
    in the loop's thread, after the deadline, and the call took as long as the slow one);
    the loop's own async receiver is refused at once and never runs later either."""
    held = HeldReceiver()
    ran: list[str] = []

    async def main() -> tuple[float, list[Any]]:
        async def own(message: Message) -> str:
            ran.append("own")
            return "own"

        berrymq.regist_function("in:*", own)
        berrymq.regist_function("in:*", held.slow, weak=False)
        berrymq.regist_function("in:*", lambda m: ran.append("late"), weak=False)
        started = time.monotonic()
        replies = berrymq.ask("in:x", timeout=0.3)
        took = time.monotonic() - started
        held.release.set()
        assert await asyncio.to_thread(held.done.wait, WAIT)
        await asyncio.sleep(0)  # a coroutine the ask left on this loop would start now
        return took, replies

    took, replies = asyncio.run(main())
    assert took < WAIT / 2, took
    assert [type(r) for r in replies] == [ReplyError, ReplyError]
    assert "ask_async" in replies[0].message
    assert replies[1].exception_type == "TimeoutError" and "slow" in replies[1].receiver
    assert ran == []  # neither the loop's own receiver nor the one after the slow one


def test_ask_async_validates_its_arguments(berrymq_bus: Bus) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="positive timeout"):
            await berrymq.ask_async("a:b", timeout=0)
        with pytest.raises(berrymq.InvalidIdentifier):
            await berrymq.ask_async("a:")

    asyncio.run(main())


def test_async_receivers_do_not_disturb_the_senders_hop_count(berrymq_bus: Bus) -> None:
    """A coroutine step that overlaps a delivery in the sender's thread must not leave
    its hop count behind in that thread (they must not share one hop box)."""
    stepping = threading.Event()
    delivered = threading.Event()
    finished = threading.Event()

    async def rx(message: Message) -> None:
        stepping.set()
        assert delivered.wait(WAIT)  # the sender's delivery ends during this step
        await asyncio.sleep(0)
        finished.set()

    def gate(message: Message) -> None:
        assert stepping.wait(WAIT)  # the coroutine's step begins during this delivery

    result: list[int] = []

    def send() -> None:
        berrymq.twitter("hop:x")
        delivered.set()
        assert finished.wait(WAIT)
        result.append(hop_box()[0])

    async def main() -> None:
        berrymq.regist_function("hop:*", rx)
        berrymq.regist_function("hop:*", gate)
        sender = threading.Thread(target=send)  # a plain thread: a context of its own
        sender.start()
        async with asyncio.timeout(WAIT):
            while not finished.is_set():
                await asyncio.sleep(0.01)
        await asyncio.to_thread(sender.join, WAIT)

    asyncio.run(main())
    assert result == [0]


def test_an_async_guard_condition_is_refused(berrymq_bus: Bus) -> None:
    async def guard(message: Message) -> bool:
        return True

    with pytest.raises(TypeError, match="guard_condition .*guard for g:x is an async function"):
        berrymq.regist_function("g:x", lambda m: None, guard, weak=False)
    assert berrymq_bus.subscriptions() == []


def test_async_receivers_with_a_worker_pool(berrymq_bus: Bus) -> None:
    berrymq.set_multiplicity(2)

    async def main() -> None:
        got: list[tuple[int, str]] = []
        done = asyncio.Event()

        async def rx(message: Message) -> None:
            got.append((message.args[0], threading.current_thread().name))
            if len(got) == 20:
                done.set()

        berrymq.regist_function("pool:*", rx)
        for i in range(10):
            berrymq.twitter("pool:x", i)
        await asyncio.to_thread(lambda: [berrymq.twitter("pool:x", i) for i in range(10, 20)])
        async with asyncio.timeout(WAIT):
            await done.wait()
        assert sorted(n for n, _ in got) == list(range(20))
        assert {name for _, name in got} == {threading.current_thread().name}

    asyncio.run(main())


def test_ask_async_keeps_its_timeout_when_longer_asks_hold_every_ask_thread(
        berrymq_bus: Bus) -> None:
    """64 asks that wait long hold all 64 threads: a short ask after them is answered by
    its own timeout, not once one of them ends (0.5 s took 7.5 s)."""
    release = threading.Event()
    berrymq_bus.subscribe("held:*", lambda message: release.wait(WAIT), weak=False)
    berrymq_bus.subscribe("quick:*", lambda message: "quick", weak=False)

    async def main() -> tuple[float, list[Any]]:
        held = [asyncio.ensure_future(berrymq.ask_async("held:x", timeout=WAIT))
                for _ in range(64)]
        executor = berrymq_bus.state(ASK_EXECUTOR)
        while not executor.saturated:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        replies = await berrymq.ask_async("quick:x", timeout=0.3)
        took = time.monotonic() - started
        release.set()
        await asyncio.gather(*held)
        return took, replies

    try:
        took, replies = asyncio.run(asyncio.wait_for(main(), 2 * WAIT))
    finally:
        release.set()
    # waiting for a thread, it would have come back once the held asks let theirs go,
    # after WAIT: the bound is far from both that and the 0.3 s of its timeout
    assert took < WAIT / 2, took
    (entry,) = replies
    assert isinstance(entry, berrymq.ReplyError) and "not started: every ask thread was busy" in str(entry)


def test_ask_async_keeps_its_timeout_when_every_ask_thread_is_busy(berrymq_bus: Bus) -> None:
    """The timeout counts from the call: 200 asks at once of a receiver that does not
    return, on 64 threads, all come back by about their timeout. (They waited for a
    thread first, and then took their whole timeout again: the last of them after 4
    timeouts, one per round of 64.) The timeout is 1 s, so that the bound, 2.5 of them,
    leaves a loaded machine 1.5 s and stays as far below the 4 of that fault."""
    timeout = 1.0
    release = threading.Event()
    berrymq_bus.subscribe("held:*", lambda message: release.wait(WAIT), weak=False)

    async def ask_all() -> list[list[Any]]:
        asks = [berrymq.ask_async("held:x", timeout=timeout) for _ in range(200)]
        return await asyncio.wait_for(asyncio.gather(*asks), WAIT)

    started = time.monotonic()
    try:
        results = asyncio.run(ask_all())
    finally:
        release.set()
    took = time.monotonic() - started
    assert took < 2.5 * timeout, took
    assert all(len(replies) == 1 and isinstance(replies[0], berrymq.ReplyError)
               and "TimeoutError" in str(replies[0]) for replies in results)


def test_ask_async_on_a_closed_bus_answers_as_ask_does(berrymq_plugin_host: Any) -> None:
    """ask() on a closed bus returns []; ask_async raised BusClosed naming its executor
    when the bus had not made one yet."""
    bus = Bus(plugins=berrymq_plugin_host)
    bus.subscribe("a:*", lambda m: 1, weak=False)
    bus.close()
    assert bus.ask("a:x", timeout=1) == []
    assert asyncio.run(ask_async_on(bus, "a:x", timeout=1)) == []


def _received(sends: Callable[[Bus], Coroutine[Any, Any, None]], count: int = 3) -> list[str]:
    """What an async receiver of ``o:x`` got, in order, once ``sends(bus)`` ran on its
    loop and ``count`` messages came."""
    bus = Bus(name="order")
    seen: list[str] = []

    async def receiver(message: Message) -> None:
        seen.append(message.args[0])

    async def main() -> None:
        bus.subscribe("o:x", receiver, weak=False)
        await sends(bus)
        while len(seen) < count:
            await asyncio.sleep(0.001)

    try:
        asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        bus.close()
    return seen


def _from_a_thread(bus: Bus, text: str) -> None:
    sender = threading.Thread(target=bus.twitter, args=("o:x", text))
    sender.start()
    sender.join()  # its twitter has returned


def test_a_message_sent_on_the_loop_after_one_from_another_thread_comes_after_it() -> None:
    """Sent on the receiver's loop, a message started at once and overtook one sent
    before from another thread (its twitter had returned), whose hand-off waited for the
    loop: asyncio.md promises one receiver its messages in the order they were sent."""

    async def sends(bus: Bus) -> None:
        _from_a_thread(bus, "first, from a thread")
        bus.twitter("o:x", "second, on the loop")
        bus.twitter("o:x", "third, on the loop")

    assert _received(sends) == ["first, from a thread", "second, on the loop",
                                "third, on the loop"]


def test_messages_sent_on_the_loop_behind_a_hand_off_keep_their_order_among_themselves() -> None:
    """Sent on the loop behind a hand-off, B waited (call_soon); C, sent on the loop after
    B by another task once the hand-off had run, started at once and overtook B."""

    async def sends(bus: Bus) -> None:
        async def send(text: str) -> None:
            bus.twitter("o:x", text)

        first = asyncio.ensure_future(send("B"))  # its step runs before A's hand-off
        _from_a_thread(bus, "A")
        second = asyncio.ensure_future(send("C"))  # its step runs after A's hand-off
        await asyncio.gather(first, second)

    assert _received(sends) == ["A", "B", "C"]
