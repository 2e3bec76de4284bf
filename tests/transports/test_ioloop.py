"""The process's I/O loop (berrymq.transports.ioloop)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

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
