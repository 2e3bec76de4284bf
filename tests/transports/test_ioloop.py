"""The process's I/O loop (berrymq.transports.ioloop)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from berrymq.bursts import BurstLog
from berrymq.transports.ioloop import (
    READ_SIZE,
    IOLoop,
    _handle_exception,
    read_buffer,
)


def test_run_returns_the_coroutines_result_from_the_io_thread(io: IOLoop) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert io.run(where(), timeout=5) == "test-io"
    assert not io.in_loop()


def test_run_times_out_and_cancels(io: IOLoop) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match="no result within 0.05 s"):
        io.run(forever(), timeout=0.05)
    assert cancelled.wait(5)


class _Interrupted(BaseException):
    """What a signal handler raises in the main thread, as Python's own does for Ctrl-C."""


def test_run_interrupted_by_a_signal_cancels_the_coroutine(io: IOLoop) -> None:
    """Ctrl-C in a blocking call ends the wait: the coroutine must not go on by itself
    (a ``get`` taking a message nobody waits for any more, a close sending after it was
    given up)."""
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    def in_the_wait() -> bool:
        frame = sys._current_frames().get(threading.main_thread().ident or 0)
        while frame is not None and frame.f_code.co_name != "wait":
            frame = frame.f_back
        return frame is not None

    def signal_once_waiting() -> None:
        # once the coroutine runs and the main thread waits for it (a signal handled
        # before, in the hand-over to the loop, is another case)
        deadline = time.monotonic() + 10
        if started.wait(10):
            while not in_the_wait() and time.monotonic() < deadline:
                time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, interrupt)
    signaller = threading.Thread(target=signal_once_waiting)
    try:
        signaller.start()
        with pytest.raises(_Interrupted):
            io.run(forever(), timeout=30)
    finally:
        signaller.join()
        signal.signal(signal.SIGUSR1, old)
    assert cancelled.wait(5)


def test_a_timeout_error_of_the_coroutine_itself_comes_as_it_is(io: IOLoop) -> None:
    # On 3.11 concurrent.futures.TimeoutError is TimeoutError: the coroutine's own error
    # was taken for run()'s timeout, reported as "no result within" and the task cancelled.
    async def gives_up() -> None:
        raise TimeoutError("the server did not answer")

    with pytest.raises(TimeoutError, match="the server did not answer"):
        io.run(gives_up(), timeout=5)


def test_a_blocking_call_on_the_io_thread_is_refused(io: IOLoop) -> None:
    async def nested() -> str:
        async def inner() -> None:
            return None

        try:
            io.run(inner(), timeout=1)
        except RuntimeError as exc:
            return str(exc)
        return "not refused"

    assert "would deadlock" in io.run(nested(), timeout=5)


def test_stop_joins_the_threads_and_a_later_use_starts_again(io: IOLoop) -> None:
    async def name() -> str:
        return threading.current_thread().name

    io.run(name(), timeout=5)
    lane_thread = io.lane._thread
    io.stop()
    assert not io.running
    assert not lane_thread.is_alive()
    assert not any(t.name == "test-io" for t in threading.enumerate())
    assert io.run(name(), timeout=5) == "test-io"


def test_each_thread_reads_sockets_into_a_buffer_of_its_own() -> None:
    # One buffer serves every connection of a loop; a loop in another thread must not
    # share it, or two reads at once would write into the same bytes.
    here = read_buffer()
    there: list[memoryview] = []
    thread = threading.Thread(target=lambda: there.append(read_buffer()))
    thread.start()
    thread.join(5)
    assert read_buffer() is here
    assert len(here) == READ_SIZE
    assert there and there[0].obj is not here.obj


def test_a_retried_accept_after_its_server_closed_is_no_error(
        caplog: pytest.LogCaptureFixture) -> None:
    """asyncio 3.11 times one retry per connection a server could not accept (no files
    left); those that come after the server closed found its socket gone, and printed a
    traceback each at the close of a node that had recovered."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_handle_exception(BurstLog(logging.getLogger("berrymq.test"))))
    gone = socket.socket()
    gone.close()
    try:
        with caplog.at_level(logging.DEBUG):
            loop.call_soon(loop._start_serving,  # type: ignore[attr-defined]
                           lambda *args: None, gone, None, None, 100)
            loop.call_soon(loop.stop)
            loop.run_forever()
            loop.call_soon(lambda: 1 / 0)  # any other error is asyncio's to print
            loop.call_soon(loop.stop)
            loop.run_forever()
    finally:
        loop.close()
    [record] = caplog.records  # the ZeroDivisionError alone
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


# A fork of a multi-threaded process is made in a child Python, not in pytest's own (where
# Python 3.12+ warns of it, and the suite turns warnings into errors).
FORK_SCRIPT = textwrap.dedent("""
    import json, os, sys, time, warnings
    warnings.simplefilter("error", RuntimeWarning)  # a coroutine left unawaited fails
    from berrymq.transports.ioloop import IOLoop, InheritedLoopError

    async def where():
        return os.getpid()

    def in_child(io):
        pid = os.fork()
        if pid:
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
        try:
            started = time.monotonic()
            try:
                answer = ["ran", io.run(where(), timeout=5) == os.getpid()]
            except InheritedLoopError as exc:
                answer = ["refused", str(exc), os.getppid()]
            answer.append(time.monotonic() - started)
            print(json.dumps(answer), flush=True)
        finally:
            os._exit(0)

    before = IOLoop()  # not started when the process forks: the child starts its own
    assert in_child(before) == 0
    running = IOLoop()
    assert running.run(where(), timeout=5) == os.getpid()
    assert in_child(running) == 0
    assert running.run(where(), timeout=5) == os.getpid()  # the parent's goes on
    print(json.dumps(["parent", os.getpid()]), flush=True)
""")


def test_a_process_forked_while_the_loop_runs_is_refused_at_once_with_the_reason() -> None:
    result = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    not_started, forked, parent = (json.loads(line) for line in result.stdout.splitlines())
    assert not_started[:2] == ["ran", True], not_started
    assert forked[0] == "refused" and forked[2] == parent[1], forked
    assert forked[1] == (
        f"this process was forked from process {parent[1]} after berryMQ's network had "
        "started there: its connections are the parent's and cannot be used here; start "
        "the network in each process after it is forked, or use multiprocessing's 'spawn' "
        "or 'forkserver' start method")
    assert forked[3] < 1.0, forked  # at once, not after the 5 s timeout
