"""asyncio: a message for an ``async def`` receiver whose event loop is stopped but not
closed (``run_until_complete`` returned, ``loop.stop()``) is not lost unseen. A flush (or
a close, or a read of ``bus.losses``) that finds its hand-off not run on a loop that is
not running withdraws it, counts it (``dropped: its async receiver's event loop is not
running``) and says False; a loop run again before that runs it, and nothing is counted;
at exit, what such a loop still holds (hand-offs, unfinished tasks) is counted and logged.

Real event loops and threads, as in test_aio.py.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from typing import Any

import pytest
from helpers import WAIT, LoopThread, clean_env, wait_for

import berrymq
from berrymq import Bus, Message
from berrymq._losses import LOOP_NOT_RUNNING
from berrymq._pending import handed, running_tasks
from berrymq.subscription import Subscription


def left_on(loop: asyncio.AbstractEventLoop) -> list[object]:
    """What berryMQ still holds for ``loop``: running tasks and hand-offs."""
    return ([t for t in running_tasks if t.get_loop() is loop]
            + [r for r in handed if r.loop is loop])


def backlog_of(subscription: Subscription) -> Any:
    receiver: Any = subscription.receiver
    return receiver.backlog


def run_again(runner: LoopThread) -> None:
    """Run ``runner``'s stopped loop again, in a new thread (closed with it)."""
    runner.thread = threading.Thread(target=runner.loop.run_forever, name="loop-again", daemon=True)
    runner.thread.start()


def test_a_flush_withdraws_and_counts_what_a_stopped_loop_was_handed(
        berrymq_bus: Bus, loops: Any, caplog: pytest.LogCaptureFixture) -> None:
    runner: LoopThread = loops("receiver-loop")
    got: list[int] = []

    async def rx(message: Message) -> None:
        got.append(message.args[0])

    async def register() -> Subscription:
        return berrymq_bus.subscribe("job:*", rx, weak=False)

    subscription = runner.run(register())
    for i in range(3):
        berrymq.twitter("job:n", i)
    wait_for(lambda: len(got) == 3, what="3 messages run")
    runner.stop()  # stopped, not closed
    for i in range(3, 8):
        berrymq.twitter("job:n", i)  # accepted: handed to the stopped loop
    assert len(left_on(runner.loop)) == 5

    with caplog.at_level(logging.WARNING, logger="berrymq"):
        assert berrymq_bus.flush(WAIT) is False
    assert berrymq_bus.losses.counts == {LOOP_NOT_RUNNING: 5}
    assert any("event loop is not running" in r.getMessage() and "job:n" in r.getMessage()
               for r in caplog.records if r.name == "berrymq")
    assert left_on(runner.loop) == []
    assert backlog_of(subscription).outstanding == 0
    assert berrymq_bus.flush(WAIT) is True  # nothing lost since

    # Withdrawn means withdrawn: run again, the loop runs only what comes after.
    run_again(runner)
    berrymq.twitter("job:n", 99)
    wait_for(lambda: 99 in got, what="the message sent after the loop ran again")
    assert got == [0, 1, 2, 99]
    assert berrymq_bus.flush(WAIT) is True
    assert berrymq_bus.losses.total == 5


def test_sending_after_run_until_complete_returned_is_counted_by_flush(berrymq_bus: Bus) -> None:
    """The loop of ``loop.run_until_complete(main())`` without ``loop.close()``; the
    program goes on sending from the same thread."""
    loop = asyncio.new_event_loop()
    got: list[int] = []

    async def rx(message: Message) -> None:
        got.append(message.args[0])

    async def main() -> None:
        berrymq.regist_function("job:*", rx)
        berrymq.twitter("job:n", -1)
        await asyncio.sleep(0)  # the hand-off runs, then the task

    try:
        loop.run_until_complete(main())
        assert got == [-1]
        for i in range(100):
            berrymq.twitter("job:n", i)
        assert berrymq_bus.flush(WAIT) is False
        assert berrymq_bus.losses.counts == {LOOP_NOT_RUNNING: 100}
        assert left_on(loop) == []
    finally:
        loop.close()
    assert got == [-1]


def test_a_loop_run_again_before_a_flush_runs_what_it_was_handed(berrymq_bus: Bus) -> None:
    loop = asyncio.new_event_loop()
    got: list[int] = []

    async def rx(message: Message) -> None:
        got.append(message.args[0])

    async def register() -> None:
        berrymq.regist_function("job:*", rx)

    async def until_all_ran() -> None:
        async with asyncio.timeout(WAIT):
            while len(got) < 10:
                await asyncio.sleep(0)

    try:
        loop.run_until_complete(register())
        for i in range(10):
            berrymq.twitter("job:n", i)  # handed to the loop, not running now
        loop.run_until_complete(until_all_ran())
    finally:
        loop.close()
    assert got == list(range(10))
    assert berrymq_bus.flush(WAIT) is True
    assert berrymq_bus.losses.total == 0


def test_sends_on_the_loop_behind_hand_offs_are_withdrawn_and_leave_the_count(
        berrymq_bus: Bus) -> None:
    """A send on the loop queued behind a hand-off (to keep their order), both left when
    the loop stopped: the flush withdraws both, and once the loop runs again neither runs
    and the receiver's count of outstanding messages is back to 0."""
    loop = asyncio.new_event_loop()
    got: list[int] = []

    async def rx(message: Message) -> None:
        got.append(message.args[0])

    async def register() -> Subscription:
        return berrymq_bus.subscribe("job:*", rx, weak=False)

    def step() -> None:  # on the loop, in one batch: neither runs before it stops
        sender = threading.Thread(target=berrymq.twitter, args=("job:n", 1))
        sender.start()
        sender.join(WAIT)
        berrymq.twitter("job:n", 2)  # behind the hand-off of 1
        loop.stop()

    try:
        subscription = loop.run_until_complete(register())
        backlog = backlog_of(subscription)
        loop.call_soon(step)
        loop.run_forever()
        assert (backlog.handed, backlog.behind, backlog.tasks) == (1, 1, 1)
        assert berrymq_bus.flush(WAIT) is False
        assert berrymq_bus.losses.counts == {LOOP_NOT_RUNNING: 2}
        assert left_on(loop) == []
        loop.run_until_complete(asyncio.sleep(0))  # runs the two withdrawn hand-offs: no-ops
        assert (backlog.handed, backlog.behind, backlog.tasks) == (0, 0, 0)
    finally:
        loop.close()
    assert got == []
    assert berrymq_bus.losses.total == 2


_AT_EXIT = """
import asyncio, atexit, logging, sys

def report():  # registered before berrymq's own exit hooks: runs after them
    import berrymq
    print("COUNTS", berrymq.get_bus().losses.counts, flush=True)

atexit.register(report)
import berrymq

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="LOG %(message)s")
started = []

async def rx(message):
    started.append(message.args[0])
    await asyncio.Event().wait()  # never finishes

async def main():
    berrymq.regist_function("held:*", rx)
    berrymq.twitter("held:n", 0)
    while not started:
        await asyncio.sleep(0)

loop = asyncio.new_event_loop()
loop.run_until_complete(main())  # its task left pending; the loop not closed
for i in range(1, 4):
    berrymq.twitter("held:n", i)  # handed to the stopped loop
print("SENT", flush=True)
"""


def test_what_a_stopped_loop_holds_at_exit_is_counted_and_logged() -> None:
    result = subprocess.run([sys.executable, "-c", _AT_EXIT], capture_output=True, text=True,
                            timeout=60, env=clean_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert "SENT" in result.stdout
    assert f"COUNTS {{{LOOP_NOT_RUNNING!r}: 4}}" in result.stdout, (result.stdout, result.stderr)
    log = [line for line in result.stderr.splitlines() if line.startswith("LOG ")]
    assert any("not running at exit" in line and "held:n" in line for line in log), result.stderr
    assert any("3 more message(s)" in line and LOOP_NOT_RUNNING in line for line in log), \
        result.stderr
    # counted once, not also once per task by asyncio (nor a coroutine never awaited)
    assert "Task was destroyed" not in result.stderr
    assert "never awaited" not in result.stderr
