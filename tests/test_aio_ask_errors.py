"""An async receiver's error in an ``ask`` is reported once, as a ReplyError entry, and not
logged too, even when its coroutine fails before the receiver call returns to the asker.

The race is made certain: the receiver's loop (:class:`WaitingLoop`) holds a thread that
hands it a message until the coroutine has failed and its reply settled, so the asker sees
the receiver call return only after the failure (before the fix the ask claimed the reply
only then, and the error was logged as nobody's)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import WAIT

import berrymq
from berrymq import Bus, Message, ReplyError
from berrymq._pending import PendingReply


class WaitingLoop(asyncio.SelectorEventLoop):
    """A loop whose ``call_soon_threadsafe``, when handed an async receiver's message,
    returns only once that message's reply has settled."""

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any,
                             context: Any = None) -> asyncio.Handle:
        handle = super().call_soon_threadsafe(callback, *args, context=context)
        replies = [arg for arg in args if type(arg) is PendingReply]
        if replies and threading.current_thread() is not self.thread:
            settled = threading.Event()
            replies[0].add_done_callback(lambda reply: settled.set())
            assert settled.wait(WAIT)
        return handle

    thread: threading.Thread


@pytest.fixture
def waiting_loop() -> Iterator[WaitingLoop]:
    loop = WaitingLoop()
    loop.thread = threading.Thread(target=loop.run_forever, name="waiting-loop", daemon=True)
    loop.thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    loop.thread.join(WAIT)
    loop.close()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def failures() -> Iterator[list[logging.LogRecord]]:
    """The lines logged on the ``berrymq`` logger (errors)."""
    records = Records()
    logger = logging.getLogger("berrymq")
    logger.addHandler(records)
    try:
        yield records.records
    finally:
        logger.removeHandler(records)


def on(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(WAIT)


async def broken(message: Message) -> None:
    raise ValueError("async bad")


def register(bus: Bus, loop: asyncio.AbstractEventLoop) -> None:
    async def subscribe() -> None:
        bus.subscribe("e:*", broken)

    on(loop, subscribe())


def check(replies: list[Any], failures: list[logging.LogRecord]) -> None:
    assert len(replies) == 1 and isinstance(replies[0], ReplyError), replies
    assert (replies[0].exception_type, replies[0].message) == ("ValueError", "async bad")
    assert [r.getMessage() for r in failures if "async receiver" in r.getMessage()] == []


def test_a_blocking_ask_from_another_thread_reports_the_error_once(
        berrymq_bus: Bus, waiting_loop: WaitingLoop, failures: list[logging.LogRecord]) -> None:
    register(berrymq_bus, waiting_loop)
    for _ in range(3):
        check(berrymq_bus.ask("e:x", timeout=WAIT), failures)


def test_ask_async_reports_the_error_once(
        berrymq_bus: Bus, waiting_loop: WaitingLoop, failures: list[logging.LogRecord]) -> None:
    register(berrymq_bus, waiting_loop)

    async def ask() -> list[Any]:
        return await berrymq.ask_async("e:x", timeout=WAIT)

    for _ in range(3):
        check(on(waiting_loop, ask()), failures)


def test_a_twitter_to_a_failing_async_receiver_is_still_logged(
        berrymq_bus: Bus, waiting_loop: WaitingLoop, failures: list[logging.LogRecord]) -> None:
    register(berrymq_bus, waiting_loop)
    berrymq_bus.twitter("e:x")  # returns once the reply settled (the loop waits for it)
    logged = [r for r in failures if "async receiver" in r.getMessage()]
    assert len(logged) == 1 and "e:x" in logged[0].getMessage()


def test_an_ask_after_a_twitter_does_not_claim_it(
        berrymq_bus: Bus, waiting_loop: WaitingLoop, failures: list[logging.LogRecord]) -> None:
    """The claim is for the one call of the ask: the next twitter's error is logged."""
    register(berrymq_bus, waiting_loop)
    check(berrymq_bus.ask("e:x", timeout=WAIT), failures)
    berrymq_bus.twitter("e:y")
    logged = [r.getMessage() for r in failures if "async receiver" in r.getMessage()]
    assert len(logged) == 1 and "e:y" in logged[0], logged
