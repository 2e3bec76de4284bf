"""berrymq._pending: PendingReply, the small thread-safe future that the call of an async
receiver returns; its loop settles it once, any thread may wait for it; what nobody
claims is logged when it fails; ``send_reply`` sends a talk's result on. (Async
receivers on their loops, end to end: test_aio.py.)"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, child_env

from berrymq import Bus, Message
from berrymq._hops import hop_box
from berrymq._pending import PendingReply, running_tasks
from berrymq.identifier import Identifier


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_task(loop: asyncio.AbstractEventLoop, reply: PendingReply,
             coro: Coroutine[Any, Any, Any], *, cancel: bool = False) -> asyncio.Task[Any]:
    """Run ``coro`` as a task on ``loop`` the way berrymq.aio does (kept in
    ``running_tasks``, ``reply.task_done`` its done callback) until ``reply`` settles."""

    async def main() -> asyncio.Task[Any]:
        task = loop.create_task(coro)
        running_tasks[task] = reply
        task.add_done_callback(reply.task_done)
        if cancel:
            task.cancel()
        settled = loop.create_future()
        reply.add_done_callback(lambda _: settled.set_result(None))
        await asyncio.wait_for(settled, WAIT)
        return task

    return loop.run_until_complete(main())


async def returns(value: Any) -> Any:
    return value


async def raises(exc: BaseException) -> None:
    raise exc


async def never_ends() -> None:
    await asyncio.Event().wait()


def log_of(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "berrymq"]


# -- a future ---------------------------------------------------------------------------------


def test_set_result_settles_it_with_that_value(loop: asyncio.AbstractEventLoop) -> None:
    reply = PendingReply("r", loop)
    assert not reply.done()
    reply.set_result(3)
    assert reply.done() and not reply.cancelled()
    assert reply.exception(0) is None
    assert reply.result(0) == 3


def test_set_exception_makes_result_raise_it(loop: asyncio.AbstractEventLoop) -> None:
    reply = PendingReply("r", loop)
    error = ValueError("boom")
    reply.set_exception(error)
    assert reply.done() and not reply.cancelled()
    assert reply.exception(0) is error
    with pytest.raises(ValueError) as info:
        reply.result(0)
    assert info.value is error


def test_it_settles_once_the_first_outcome_stays(loop: asyncio.AbstractEventLoop) -> None:
    reply = PendingReply("r", loop)
    calls: list[PendingReply] = []
    reply.add_done_callback(calls.append)
    reply.set_result(1)
    reply.set_result(2)
    reply.set_exception(ValueError("late"))
    assert reply.result(0) == 1
    assert calls == [reply]  # the callbacks ran once, at the first


def test_result_waits_at_most_the_timeout_then_names_the_receiver(
        loop: asyncio.AbstractEventLoop) -> None:
    reply = PendingReply("app.on_job", loop)
    with pytest.raises(TimeoutError, match="async receiver app.on_job did not finish in time"):
        reply.result(0.05)
    with pytest.raises(TimeoutError, match="app.on_job"):
        reply.exception(0.05)
    assert not reply.done()


def test_any_thread_may_wait_for_the_result(loop: asyncio.AbstractEventLoop) -> None:
    reply = PendingReply("r", loop)
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        results = [executor.submit(reply.result, WAIT) for _ in range(4)]
        # each waiting thread has added the callback that wakes it
        deadline = time.monotonic() + WAIT
        while len(reply._callbacks or ()) < 4:
            assert time.monotonic() < deadline, "the threads did not wait for the result"
            time.sleep(0.001)
        assert not any(r.done() for r in results)
        reply.set_result("done")
        assert [r.result(WAIT) for r in results] == ["done"] * 4


def test_a_done_callback_runs_once_settled_or_at_once_when_it_already_is(
        loop: asyncio.AbstractEventLoop) -> None:
    reply = PendingReply("r", loop)
    calls: list[tuple[str, PendingReply]] = []
    reply.add_done_callback(lambda r: calls.append(("first", r)))
    reply.add_done_callback(lambda r: calls.append(("second", r)))
    assert calls == []
    reply.set_result(None)
    assert calls == [("first", reply), ("second", reply)]  # in the order added
    reply.add_done_callback(lambda r: calls.append(("late", r)))
    assert calls[2:] == [("late", reply)]  # at once, in this thread


# -- settled by the task of the coroutine -----------------------------------------------------


def test_task_done_settles_with_what_the_coroutine_returned_and_forgets_the_task(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    reply = PendingReply("r", loop, Message("job:x"))
    with caplog.at_level(logging.DEBUG, logger="berrymq"):
        task = run_task(loop, reply, returns(42))
    assert reply.result(0) == 42 and not reply.cancelled()
    assert task not in running_tasks
    assert log_of(caplog) == []


def test_a_coroutines_exception_is_logged_when_nobody_claimed_it(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    reply = PendingReply("app.on_job", loop, Message("job:x"))
    error = ValueError("boom")
    with caplog.at_level(logging.DEBUG, logger="berrymq"):
        task = run_task(loop, reply, raises(error))
    assert reply.exception(0) is error
    assert task not in running_tasks
    assert log_of(caplog) == [(logging.ERROR, "async receiver app.on_job failed on message job:x")]
    [record] = [r for r in caplog.records if r.name == "berrymq"]
    assert record.exc_info is not None and record.exc_info[1] is error  # with its traceback


def test_a_claimed_exception_is_left_to_the_claimant(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    reply = PendingReply("app.on_job", loop, Message("job:x"))
    reply.claimed = True  # as ask does: it reports the error in its reply
    with caplog.at_level(logging.DEBUG, logger="berrymq"):
        run_task(loop, reply, raises(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        reply.result(0)
    assert log_of(caplog) == []


@pytest.mark.parametrize("claimed", [False, True])
def test_a_cancelled_task_cancels_it_and_is_logged_unless_claimed(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture, claimed: bool) -> None:
    reply = PendingReply("app.on_job", loop, Message("job:x"))
    reply.claimed = claimed
    with caplog.at_level(logging.DEBUG, logger="berrymq"):
        task = run_task(loop, reply, never_ends(), cancel=True)
    assert reply.done() and reply.cancelled()
    assert task not in running_tasks
    with pytest.raises(concurrent.futures.CancelledError, match="app.on_job was cancelled"):
        reply.result(0)
    with pytest.raises(concurrent.futures.CancelledError):
        reply.exception(0)
    warning = (logging.WARNING, "async receiver app.on_job was cancelled while handling message job:x")
    assert log_of(caplog) == ([] if claimed else [warning])


@pytest.mark.parametrize("claimed", [False, True])
def test_fail_settles_with_the_error_and_logs_it_unless_claimed(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture, claimed: bool) -> None:
    reply = PendingReply("app.on_job", loop)  # no message at hand: "?"
    reply.claimed = claimed
    error = TypeError("not a coroutine")
    with caplog.at_level(logging.DEBUG, logger="berrymq"):
        reply.fail(error)  # the coroutine could not even be started
    assert reply.exception(0) is error
    failed = (logging.ERROR, "async receiver app.on_job failed on message ?")
    assert log_of(caplog) == ([] if claimed else [failed])


# -- send_reply: a talk's result, sent on --------------------------------------------------------


def test_send_reply_sends_the_result_with_the_given_hop_count(
        berrymq_bus: Bus, loop: asyncio.AbstractEventLoop) -> None:
    got: list[tuple[tuple[Any, ...], int, int]] = []
    berrymq_bus.subscribe("r:back", lambda m: got.append((m.args, m.hops, hop_box()[0])), weak=False)
    box = hop_box()
    outer = box[0]
    reply = PendingReply("r", loop)
    reply.send_reply(berrymq_bus, Identifier("r:back"), 4)
    assert got == []  # nothing until the result is there
    reply.set_result("answer")
    # sent as a message 4 hops on; its receiver runs at 5, as in any delivery
    assert got == [(("answer",), 4, 5)]
    assert box[0] == outer  # the thread's own count is back


def test_send_reply_sends_nothing_for_none_an_exception_or_a_cancel(
        berrymq_bus: Bus, loop: asyncio.AbstractEventLoop) -> None:
    got: list[Message] = []
    berrymq_bus.subscribe("r:back", got.append, weak=False)
    none, failed, cancelled = (PendingReply("r", loop) for _ in range(3))
    for reply in (none, failed, cancelled):
        reply.claimed = True  # (the failures are not logged here)
        reply.send_reply(berrymq_bus, Identifier("r:back"), 1)
    none.set_result(None)
    failed.set_exception(ValueError("boom"))
    run_task(loop, cancelled, never_ends(), cancel=True)
    assert none.done() and failed.done() and cancelled.cancelled()
    assert got == []


def test_a_reply_settled_before_send_reply_is_still_sent_on_its_running_loop(
        berrymq_bus: Bus) -> None:
    """The coroutine may finish before the talking thread adds the callback: the reply was
    then sent from that thread, where a full queue made it wait put_timeout (5 s in the
    flaky test_a_full_queue_refuses_a_sender_on_a_running_loop_at_once) instead of being
    refused at once as on the loop."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        sent_from: list[threading.Thread] = []
        arrived = threading.Event()

        def record(message: Message) -> None:
            sent_from.append(threading.current_thread())
            arrived.set()

        berrymq_bus.subscribe("r:back", record, weak=False)
        reply = PendingReply("r", loop)
        reply.set_result("answer")  # settled first
        reply.send_reply(berrymq_bus, Identifier("r:back"), 1)
        assert arrived.wait(WAIT)
        assert sent_from == [runner]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(WAIT)
        loop.close()


def test_a_reply_that_cannot_be_sent_is_logged_not_raised(
        berrymq_bus: Bus, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    def broken(message: Message) -> None:
        raise RuntimeError("receiver of the reply failed")

    berrymq_bus.subscribe("r:back", broken, weak=False)  # the bus raises receivers' errors
    box = hop_box()
    outer = box[0]
    reply = PendingReply("app.on_job", loop)
    reply.send_reply(berrymq_bus, Identifier("r:back"), 2)
    with caplog.at_level(logging.DEBUG, logger="berrymq"):
        reply.set_result("answer")  # settles on the loop: nobody to raise to
    assert (logging.ERROR, "sending the reply of app.on_job to r:back failed") in log_of(caplog)
    assert box[0] == outer


LOOP_CLOSED_BEFORE_EXIT = """
import asyncio, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
import berrymq

async def slow(message):
    await asyncio.sleep(60)

async def main():
    berrymq.get_bus().subscribe("s:*", slow)
    for i in range(3):
        berrymq.twitter("s:x", i)
    await asyncio.sleep(0.01)  # the tasks start

loop = asyncio.new_event_loop()
loop.run_until_complete(main())
loop.close()  # with the three tasks not finished; then the program ends
print("exiting")
"""


def test_what_a_loop_closed_before_the_process_ended_held_is_counted_at_exit(
        tmp_path: Path) -> None:
    """A program that closes a loop with receivers' tasks unfinished and then ends
    without flush(), close() or reading losses: nothing was said at all (they are looked
    for at those calls only), and asyncio's "Task was destroyed" lines came at exit."""
    result = subprocess.run([sys.executable, "-c", LOOP_CLOSED_BEFORE_EXIT],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env=child_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "exiting"
    assert "its event loop was closed before it finished message s:x" in lines[1]
    assert lines[2:] == ["bus default lost 2 more message(s): 2 dropped: its async "
                         "receiver's event loop was closed (3 lost in all, see bus.losses)"]
    assert "Task was destroyed" not in result.stderr
