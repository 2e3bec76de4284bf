"""berrymq.transports.handback: a result handed from the I/O loop to a blocked thread."""

from __future__ import annotations

import threading

import pytest

from berrymq.transports.handback import Handback
from berrymq.transports.ioloop import io_loop


def test_a_value_set_on_the_loop_reaches_the_waiting_thread() -> None:
    handback: Handback[str] = Handback()
    io_loop.call_soon(handback.set_result, "answer")
    assert handback.result(10) == "answer"
    assert handback.done()


def test_an_exception_set_is_raised_in_the_waiting_thread() -> None:
    handback: Handback[str] = Handback()
    io_loop.call_soon(handback.set_exception, ConnectionError("peer gone"))
    with pytest.raises(ConnectionError, match="peer gone"):
        handback.result(10)


def test_only_the_first_setting_counts() -> None:
    handback: Handback[str] = Handback()
    handback.set_result("first")
    handback.set_result("late reply")
    handback.set_exception(ConnectionError("closed after"))
    assert handback.result(10) == "first"


def test_nothing_set_in_time_is_a_timeout_naming_the_wait() -> None:
    handback: Handback[str] = Handback()
    assert not handback.done()
    with pytest.raises(TimeoutError, match="within 0.01 s"):
        handback.result(0.01)


def test_a_thread_blocked_before_the_value_is_set_wakes_with_it() -> None:
    handback: Handback[int] = Handback()
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(handback.result(10)))
    waiter.start()
    io_loop.call_soon(handback.set_result, 42)
    waiter.join(10)
    assert got == [42]
