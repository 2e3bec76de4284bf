"""asyncio: a message for an ``async def`` receiver that its loop never runs or finishes
(the loop closed, the task cancelled, ``asyncio.run`` ending) is counted in
``bus.losses``, makes ``flush()`` say False, and leaves nothing behind in
``running_tasks`` or ``handed``.

Real event loops and threads, as in test_aio.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
import weakref

import pytest
from helpers import WAIT, wait_for

import berrymq
from berrymq import Bus, Message
from berrymq._losses import ASYNC_CANCELLED, LOOP_CLOSED
from berrymq._pending import handed, running_tasks


def left_on(loop: asyncio.AbstractEventLoop) -> list[object]:
    """What berryMQ still holds for ``loop``: running tasks and hand-offs."""
    return ([t for t in running_tasks if t.get_loop() is loop]
            + [r for r in handed if r.loop is loop])


def test_a_message_for_a_closed_loop_is_counted_as_well_as_raised(
        berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    async def rx(message: Message) -> None:
        pass

    async def register() -> None:
        berrymq.regist_function("gone:*", rx)

    asyncio.run(register())  # the loop is closed when run() returns
    with caplog.at_level(logging.WARNING, logger="berrymq"), pytest.raises(ExceptionGroup):
        berrymq.twitter("gone:x")
    assert berrymq_bus.losses.counts == {LOOP_CLOSED: 1}
    assert any("event loop was closed" in r.getMessage() and "gone:x" in r.getMessage()
               for r in caplog.records)
    assert berrymq_bus.flush(WAIT) is False
    assert berrymq_bus.flush(WAIT) is True  # nothing lost since


def test_tasks_and_hand_offs_left_on_a_stopped_then_closed_loop_are_counted_and_let_go(
        berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="receiver-loop", daemon=True)
    thread.start()
    started: list[weakref.ref[asyncio.Task[None]]] = []

    async def never_ends(message: Message) -> None:
        task = asyncio.current_task()
        assert task is not None
        started.append(weakref.ref(task))
        await asyncio.Event().wait()

    async def register() -> None:
        berrymq.regist_function("stuck:*", never_ends)

    asyncio.run_coroutine_threadsafe(register(), loop).result(WAIT)
    for i in range(10):
        berrymq.twitter("stuck:run", i)
    wait_for(lambda: len(started) == 10, what="10 tasks started")
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    assert not thread.is_alive()
    for i in range(5):  # handed to the stopped loop, which will never run them
        berrymq.twitter("stuck:run", 10 + i)
    assert len(left_on(loop)) == 15
    loop.close()

    with caplog.at_level(logging.WARNING, logger="berrymq"):
        assert berrymq_bus.flush(WAIT) is False
    assert berrymq_bus.losses.counts == {LOOP_CLOSED: 15}
    assert any("event loop was closed" in r.getMessage() and "stuck:run" in r.getMessage()
               for r in caplog.records if r.name == "berrymq")
    assert left_on(loop) == []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert [ref for ref in started if ref() is not None] == []  # the tasks are freed
    # counted and logged once above, not also once per task by asyncio when collected
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert berrymq_bus.flush(WAIT) is True


def test_reading_the_losses_looks_for_closed_loops(berrymq_bus: Bus) -> None:
    """``bus.losses`` (what /status shows) counts a closed loop's messages when read,
    without waiting for a flush, a close or a send to that loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="receiver-loop", daemon=True)
    thread.start()
    started = threading.Event()

    async def never_ends(message: Message) -> None:
        started.set()
        await asyncio.Event().wait()

    async def register() -> None:
        berrymq.regist_function("stuck:*", never_ends)

    asyncio.run_coroutine_threadsafe(register(), loop).result(WAIT)
    berrymq.twitter("stuck:run", 1)
    assert started.wait(WAIT)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    loop.close()
    assert berrymq_bus.losses.counts == {LOOP_CLOSED: 1}
    assert left_on(loop) == []


def test_a_task_that_finished_just_before_its_loop_closed_is_not_counted(berrymq_bus: Bus) -> None:
    loop = asyncio.new_event_loop()
    done: list[str] = []

    async def rx(message: Message) -> str:
        done.append(message.id)
        return "answer"

    async def register() -> None:
        berrymq.regist_function("quick:*", rx)

    loop.run_until_complete(register())
    berrymq.twitter("quick:x")  # handed over: this thread does not run the loop now
    # One turn runs the hand-off (the task is made), the next its step (it finishes and
    # its done callback is scheduled), then the loop stops before running that callback.
    loop.call_soon(loop.call_soon, loop.stop)
    loop.run_forever()
    assert done == ["quick:x"] and len(left_on(loop)) == 1
    loop.close()
    assert berrymq_bus.flush(WAIT) is True
    assert berrymq_bus.losses.total == 0
    assert left_on(loop) == []


def test_asyncio_run_ending_while_another_thread_sends_loses_nothing_unseen(
        berrymq_bus: Bus) -> None:
    done: list[int] = []
    refused: list[BaseException] = []
    sent = 0
    loops: list[asyncio.AbstractEventLoop] = []

    def send() -> None:
        nonlocal sent
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                berrymq.twitter("run:n", sent)
            except ExceptionGroup as exc:  # the loop is closed: this one is counted too
                sent += 1
                refused.append(exc)
                return
            sent += 1

    async def rx(message: Message) -> None:
        await asyncio.sleep(0)
        done.append(message.args[0])

    sender = threading.Thread(target=send, name="sender")

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        berrymq.regist_function("run:*", rx)
        sender.start()
        async with asyncio.timeout(WAIT):
            while len(done) < 100:
                await asyncio.sleep(0.001)
        # returning ends asyncio.run: it cancels the tasks left and closes the loop

    asyncio.run(main())
    sender.join(WAIT)
    assert not sender.is_alive()
    assert refused, "the sender should have met the closed loop"
    assert berrymq_bus.flush(WAIT) is False
    counts = berrymq_bus.losses.counts
    assert set(counts) <= {LOOP_CLOSED, ASYNC_CANCELLED}
    assert len(done) + berrymq_bus.losses.total == sent  # each delivered or counted
    assert left_on(loops[0]) == []


def test_a_cancelled_async_receiver_is_counted(
        berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        tasks: list[asyncio.Task[None]] = []

        async def never_ends(message: Message) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.append(task)
            await asyncio.Event().wait()

        berrymq.regist_function("cancel:*", never_ends)
        berrymq.twitter("cancel:me")
        async with asyncio.timeout(WAIT):
            while not tasks:
                await asyncio.sleep(0)
        tasks[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[0]
        assert tasks[0] not in running_tasks

    with caplog.at_level(logging.WARNING, logger="berrymq"):
        asyncio.run(main())
    assert berrymq_bus.losses.counts == {ASYNC_CANCELLED: 1}
    assert any("was cancelled" in r.getMessage() and "cancel:me" in r.getMessage()
               for r in caplog.records)
    assert berrymq_bus.flush(WAIT) is False
