"""asyncio: back-pressure for slow ``async def`` receivers (``async_pending_limit``,
``async_pending_wait``).

A receiver has at most ``async_pending_limit`` messages outstanding (handed to its loop and
not finished). Beyond it a sender on the receiver's own loop is refused at once with
``QueueFull``; a sender in another thread waits up to ``async_pending_wait`` seconds for
room, then is refused; in a worker thread the refusal is counted. A message leaves the
count however it ends (returned, raised, cancelled, swept from a closed loop), so the count
never leaks. Real event loops and threads, as in test_aio.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, LoopThread, held_async_receiver, wait_for

from berrymq import Bus, Message, QueueFull, ReplyError, SettingsError
from berrymq._losses import LOOP_CLOSED, LOSSES, REPLY_REFUSED, WORKER_REFUSED
from berrymq.plugins import PluginHost
from berrymq.settings import load_settings
from berrymq.subscription import Subscription


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.close()


def subscribe_on(runner: LoopThread, bus: Bus, pattern: str,
                 receiver: Callable[[Message], Any]) -> Subscription:
    """Register the async ``receiver`` from ``runner``'s loop (where it will run)."""
    async def register() -> Subscription:
        return bus.subscribe(pattern, receiver, weak=False)

    return runner.run(register())  # type: ignore[no-any-return]


def outstanding(subscription: Subscription) -> int:
    """How many messages the async receiver of ``subscription`` has outstanding."""
    receiver: Any = subscription.receiver
    return int(receiver.backlog.outstanding)


def test_a_send_on_the_receivers_own_loop_is_refused_at_once_when_full(
        berrymq_plugin_host: PluginHost) -> None:
    got: list[int] = []

    async def main() -> None:
        bus = Bus(async_pending_limit=3, async_pending_wait=WAIT, plugins=berrymq_plugin_host)
        release = asyncio.Event()
        all_done = asyncio.Event()

        async def slow(message: Message) -> None:
            await release.wait()
            got.append(message.args[0])
            if len(got) == 3:
                all_done.set()

        bus.subscribe("job:*", slow, weak=False)
        for i in range(3):
            bus.twitter("job:x", i)
        started = time.monotonic()
        with pytest.raises(QueueFull, match=r"async receiver .*slow has 3 messages outstanding "
                           r"\(setting async_pending_limit\); message job:x was refused at once"):
            bus.twitter("job:x", 3)
        assert time.monotonic() - started < WAIT / 2  # it did not wait for room
        release.set()
        await asyncio.wait_for(all_done.wait(), WAIT)
        bus.twitter("job:x", 4)  # the finished ones made room
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert bus.losses.counts == {}  # refused, not lost: the sender was told
        bus.close()

    asyncio.run(main())
    assert got == [0, 1, 2, 4]


def test_a_refusal_for_a_stopped_loop_says_the_loop_is_not_running(
        berrymq_plugin_host: PluginHost) -> None:
    """A loop stopped (not closed) makes no room: the refusal blamed the receiver's
    capacity alone, and each send waited the whole async_pending_wait not knowing why."""
    bus = Bus(async_pending_limit=1, async_pending_wait=0.1, plugins=berrymq_plugin_host)
    loop = asyncio.new_event_loop()

    async def receive(message: Message) -> None:
        pass

    async def subscribe() -> None:
        bus.subscribe("job:*", receive, weak=False)

    try:
        loop.run_until_complete(subscribe())  # the receiver's loop, which then stops
        bus.twitter("job:x", 0)  # handed to it: the one outstanding message
        with pytest.raises(QueueFull, match=r"was refused; its event loop is not running "
                                            r"\(stopped, not closed\)"):
            bus.twitter("job:x", 1)
    finally:
        bus.close()
        loop.close()


def test_a_sender_in_another_thread_waits_for_room_then_is_refused(
        berrymq_plugin_host: PluginHost, loop_thread: LoopThread) -> None:
    bus = Bus(async_pending_limit=2, async_pending_wait=0.3, plugins=berrymq_plugin_host)
    release = threading.Event()

    async def stuck(message: Message) -> None:
        await asyncio.to_thread(release.wait, WAIT)  # until released, at most WAIT

    subscription = subscribe_on(loop_thread, bus, "job:*", stuck)
    bus.twitter("job:x", 0)
    bus.twitter("job:x", 1)
    started = time.monotonic()
    with pytest.raises(QueueFull, match=r"has 2 messages outstanding \(setting "
                       r"async_pending_limit\) and no room came within 0\.3s \(setting "
                       r"async_pending_wait\); message job:x was refused"):
        bus.twitter("job:x", 2)
    assert time.monotonic() - started >= 0.29
    assert outstanding(subscription) == 2  # the refused one was not handed over
    release.set()
    wait_for(lambda: outstanding(subscription) == 0, what="both messages finished")
    bus.twitter("job:x", 3)  # room again: accepted at once
    assert bus.flush(WAIT) is True
    bus.close()


def test_room_made_by_a_finished_task_lets_a_waiting_sender_through(
        berrymq_plugin_host: PluginHost, loop_thread: LoopThread) -> None:
    bus = Bus(async_pending_limit=1, async_pending_wait=WAIT, plugins=berrymq_plugin_host)
    release = asyncio.Event()
    got: list[int] = []
    delivered = threading.Event()

    async def gated(message: Message) -> None:
        if message.args[0] == 0:
            await release.wait()
        got.append(message.args[0])
        if len(got) == 2:
            delivered.set()

    subscription = subscribe_on(loop_thread, bus, "job:*", gated)
    receiver: Any = subscription.receiver
    bus.twitter("job:x", 0)
    outcome: list[BaseException | None] = []

    def send() -> None:
        try:
            bus.twitter("job:x", 1)
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: receiver.backlog.waiting == 1, what="the sender waiting for room")
    assert not outcome  # still waiting: the first message holds the only place
    loop_thread.loop.call_soon_threadsafe(release.set)
    sender.join(WAIT)
    assert outcome == [None]
    assert delivered.wait(WAIT)
    assert got == [0, 1]
    bus.close()


@pytest.mark.parametrize("ending", ["return", "raise", "cancel"])
def test_a_message_leaves_the_count_however_its_coroutine_ends(
        berrymq_plugin_host: PluginHost, ending: str) -> None:
    limit = 4

    async def main() -> None:
        bus = Bus(async_pending_limit=limit, plugins=berrymq_plugin_host)
        tasks: list[asyncio.Task[Any]] = []

        async def receiver(message: Message) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.append(task)
            if ending == "raise":
                raise ValueError("receiver failed")
            if ending == "cancel":
                await asyncio.Event().wait()

        subscription = bus.subscribe("job:*", receiver, weak=False)
        for _ in range(3):  # three rounds of a full backlog: a leak would refuse round 2
            del tasks[:]
            for i in range(limit):
                bus.twitter("job:x", i)
            with pytest.raises(QueueFull):
                bus.twitter("job:x", limit)
            async with asyncio.timeout(WAIT):
                while len(tasks) < limit:
                    await asyncio.sleep(0)
            if ending == "cancel":
                for task in tasks:
                    task.cancel()
            await asyncio.wait(tasks, timeout=WAIT)
            await asyncio.sleep(0)  # the tasks' done callbacks
            assert outstanding(subscription) == 0
        bus.close()

    asyncio.run(main())


def test_a_talk_reply_a_full_async_receiver_refuses_is_counted(
        berrymq_plugin_host: PluginHost) -> None:
    """An async receiver's reply to ``talk`` is sent when its coroutine ends, on its loop,
    where no sender is left: a refusal of it is counted, and flush() says False."""

    async def main() -> None:
        bus = Bus(async_pending_limit=1, plugins=berrymq_plugin_host)
        held, holding = asyncio.Event(), asyncio.Event()
        got: list[int] = []

        async def answers(message: Message) -> int:
            return int(message.args[0]) * 10

        async def on_reply(message: Message) -> None:
            holding.set()
            await held.wait()
            got.append(message.args[0])

        bus.subscribe("q:*", answers, weak=False)
        bus.subscribe("r:*", on_reply, weak=False)
        bus.talk("q:x", "r:done", 1)
        await asyncio.wait_for(holding.wait(), WAIT)  # answers has room again
        bus.talk("q:x", "r:done", 2)  # its reply finds on_reply holding the first
        async with asyncio.timeout(WAIT):
            while not bus.state(LOSSES).total:
                await asyncio.sleep(0)
        held.set()
        async with asyncio.timeout(WAIT):
            while not got:
                await asyncio.sleep(0)
        assert got == [10]
        assert bus.losses.counts == {REPLY_REFUSED: 1}
        assert await asyncio.to_thread(bus.flush, WAIT) is False
        bus.close()

    asyncio.run(main())


def test_an_ask_refused_by_a_full_async_receiver_names_the_function(
        berrymq_plugin_host: PluginHost) -> None:
    """The ``ReplyError`` entry names the receiver's function, not the wrapper the bus
    calls for it."""
    with Bus(async_pending_limit=1, async_pending_wait=0, plugins=berrymq_plugin_host) as bus, \
            held_async_receiver(bus, "job:*"):
        bus.twitter("job:x", 1)  # held: the receiver is full
        [entry] = bus.ask("job:x", 2, timeout=WAIT)
        assert isinstance(entry, ReplyError) and entry.exception_type == "QueueFull"
        assert entry.receiver.endswith("held_async_receiver.<locals>.held"), entry.receiver


def test_messages_swept_from_a_closed_loop_leave_the_count(
        berrymq_plugin_host: PluginHost, loop_thread: LoopThread) -> None:
    bus = Bus(async_pending_limit=4, async_pending_wait=0, plugins=berrymq_plugin_host)
    started = threading.Semaphore(0)

    async def never_ends(message: Message) -> None:
        started.release()
        await asyncio.Event().wait()

    subscription = subscribe_on(loop_thread, bus, "stuck:*", never_ends)
    bus.twitter("stuck:x", 0)
    bus.twitter("stuck:x", 1)
    for _ in range(2):
        assert started.acquire(timeout=WAIT)
    loop_thread.stop()
    bus.twitter("stuck:x", 2)  # handed to the stopped loop: outstanding, never run
    bus.twitter("stuck:x", 3)
    assert outstanding(subscription) == 4
    loop_thread.loop.close()
    assert bus.flush(WAIT) is False  # the sweep: two tasks and two hand-offs counted
    assert bus.losses.counts == {LOOP_CLOSED: 4}
    assert outstanding(subscription) == 0
    bus.close()


def test_a_refusal_in_a_worker_thread_is_counted(
        berrymq_plugin_host: PluginHost, loop_thread: LoopThread) -> None:
    bus = Bus(multiplicity=1, async_pending_limit=1, async_pending_wait=0,
              plugins=berrymq_plugin_host)
    release = threading.Event()

    async def stuck(message: Message) -> None:
        await asyncio.to_thread(release.wait, WAIT)  # until released, at most WAIT

    subscribe_on(loop_thread, bus, "job:*", stuck)
    bus.twitter("job:x", 0)
    bus.twitter("job:x", 1)  # the worker finds the backlog full: nobody left to tell
    assert bus.join(WAIT) is True
    assert bus.losses.counts == {WORKER_REFUSED.format("QueueFull"): 1}
    release.set()
    bus.close()


def test_async_receivers_may_refuse_so_a_node_answers_after_delivery(
        berrymq_plugin_host: PluginHost, loop_thread: LoopThread) -> None:
    bus = Bus(plugins=berrymq_plugin_host)

    def plain(message: Message) -> None:
        pass

    async def coroutine(message: Message) -> None:
        pass

    assert not bus.subscribe("plain:*", plain, weak=False).refuses
    assert subscribe_on(loop_thread, bus, "aio:*", coroutine).refuses
    assert bus.may_refuse("plain:x") is False
    assert bus.may_refuse("aio:x") is True
    bus.close()


def test_the_bounds_have_defaults_and_come_from_the_settings_file(
        berrymq_plugin_host: PluginHost, loop_thread: LoopThread, tmp_path: Path) -> None:
    async def coroutine(message: Message) -> None:
        pass

    bus = Bus(plugins=berrymq_plugin_host)
    receiver: Any = subscribe_on(loop_thread, bus, "job:*", coroutine).receiver
    assert (receiver.backlog.limit, receiver.backlog.wait) == (10_000, 1.0)
    bus.close()
    path = tmp_path / "berrymq.toml"
    path.write_text("[berrymq]\nasync_pending_limit = 3\nasync_pending_wait = inf\n")
    bus = Bus(plugins=PluginHost(load_settings(path)))
    receiver = subscribe_on(loop_thread, bus, "job:*", coroutine).receiver
    assert receiver.backlog.limit == 3
    assert receiver.backlog.wait > 86_400 * 365  # inf: as long as it takes
    bus.close()
    bus = Bus(async_pending_limit=5, plugins=PluginHost(load_settings(path)))  # code wins
    receiver = subscribe_on(loop_thread, bus, "job:*", coroutine).receiver
    assert receiver.backlog.limit == 5
    bus.close()


@pytest.mark.parametrize(("line", "problem"), [
    ("async_pending_limit = 0", "async_pending_limit must be at least 1, got 0"),
    ("async_pending_limit = 2.5", "async_pending_limit must be an integer, got float"),
    ("async_pending_limit = true", "async_pending_limit must be an integer, got bool"),
    ("async_pending_wait = -1", "async_pending_wait must be 0 or more, got -1"),
    ("async_pending_wait = nan", "async_pending_wait must be 0 or more, got nan"),
    ("async_pending_wait = '1'", "async_pending_wait must be an integer or a number, got str"),
])
def test_a_malformed_bound_in_the_settings_file_is_an_error_naming_it(
        tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "berrymq.toml"
    path.write_text(f"[berrymq]\n{line}\n")
    with pytest.raises(SettingsError, match=problem) as caught:
        load_settings(path)
    assert ":2:" in str(caught.value)  # the line


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"async_pending_limit": 0}, ValueError, "async_pending_limit must be at least 1, got 0"),
    ({"async_pending_limit": "9"}, TypeError, "async_pending_limit must be an integer, got str"),
    ({"async_pending_wait": -0.5}, ValueError, "async_pending_wait must be 0 or more, got -0.5"),
    ({"async_pending_wait": "1"}, TypeError,
     "async_pending_wait must be an integer or a number, got str"),
])
def test_a_malformed_bound_given_to_the_bus_is_refused_naming_it(
        berrymq_plugin_host: PluginHost, arguments: dict[str, Any], error: type[Exception],
        message: str) -> None:
    with pytest.raises(error, match=f"^{message}"):
        Bus(plugins=berrymq_plugin_host, **arguments)


def test_a_sender_waiting_for_room_is_told_when_the_receivers_loop_closes(
        berrymq_plugin_host: PluginHost, loop_thread: LoopThread) -> None:
    """A closed loop makes no room: the sender waiting for it waited out the whole
    async_pending_wait (forever with inf) and was then told there was no room."""
    bus = Bus(async_pending_limit=1, async_pending_wait=float("inf"), raise_errors=True,
              plugins=berrymq_plugin_host)
    release = threading.Event()

    async def stuck(message: Message) -> None:
        await asyncio.to_thread(release.wait, WAIT)

    subscription = subscribe_on(loop_thread, bus, "job:*", stuck)
    bus.twitter("job:x", 0)
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            bus.twitter("job:x", 1)
        except BaseException as exc:  # what the sender was told
            outcome.append(exc)

    sender = threading.Thread(target=send, name="waiting-sender")
    sender.start()
    wait_for(lambda: subscription.receiver.backlog.waiting == 1,  # type: ignore[union-attr]
             what="the sender waiting for room")
    loop_thread.close()
    started = time.monotonic()
    sender.join(WAIT)
    release.set()
    try:
        assert not sender.is_alive(), "the sender still waits for a loop that is closed"
        assert time.monotonic() - started < WAIT / 2
        (group,) = outcome
        assert isinstance(group, ExceptionGroup)  # raise_errors: the receiver's failure
        (told,) = group.exceptions
        assert "event loop of async receiver" in str(told) and "is closed" in str(told), told
        assert not subscription.active  # unsubscribed, as for a send to a closed loop
    finally:
        bus.close()


@pytest.mark.parametrize("call", ["close", "flush"])
def test_a_pool_waited_for_on_the_receivers_loop_does_not_stall_it(
        berrymq_plugin_host: PluginHost, call: str) -> None:
    """close() or flush() on the loop that runs the async receivers, with workers holding
    messages for them: only that loop could make room, so each worker waited out
    async_pending_wait (5 s here; with inf, for good) with the loop stalled. They are
    refused at once instead, and counted as lost."""
    bus = Bus(multiplicity=2, async_pending_limit=2, async_pending_wait=5,
              plugins=berrymq_plugin_host)

    async def main() -> float:
        async def handle(message: Message) -> None:
            await asyncio.sleep(0)

        bus.subscribe("job:*", handle, weak=False)
        for i in range(20):
            bus.twitter("job:x", i)
        started = time.monotonic()
        if call == "close":
            bus.close()
        else:
            assert bus.flush(WAIT) is False  # what the workers could not hand over
        return time.monotonic() - started

    try:
        stalled = asyncio.run(asyncio.wait_for(main(), 4 * WAIT))
    finally:
        bus.close()
    assert stalled < 2.5, f"the loop was stalled {stalled:.1f}s"
    refused = bus.losses.counts.get(WORKER_REFUSED.format("QueueFull"), 0)
    assert refused > 0, bus.losses.counts
