"""The outbox of a connection (berrymq_jsonrpc.outbox): what a failure reports."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

from berrymq_jsonrpc.outbox import Outbox

from berrymq import ConnectionClosed

WAIT = 10.0


def test_a_failure_reports_the_batch_on_its_way_and_every_message_behind_it() -> None:
    """The one line a failed link writes says how many messages it did not deliver: the
    batch that failed and those queued behind it (it once said the batch alone: "could
    not forward 1 message(s)" for 51 counted as lost)."""
    sending = threading.Event()
    fail = threading.Event()
    batches: list[list[str]] = []
    reported: list[int] = []
    done = threading.Event()

    async def sink(batch: list[str]) -> None:
        batches.append(batch)
        sending.set()
        deadline = time.monotonic() + WAIT
        while not fail.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        raise ConnectionResetError("the peer reset the connection")

    def on_failure(exc: BaseException, count: int) -> None:
        reported.append(count)
        done.set()

    outbox = Outbox(sink, max_bytes=1 << 20, on_failure=on_failure, name="test")
    try:
        outbox.put('["a:b",[0],{}]')
        assert sending.wait(WAIT)
        for i in range(1, 51):
            outbox.put(f'["a:b",[{i}],{{}}]')
        fail.set()
        assert done.wait(WAIT)
        assert [len(batch) for batch in batches] == [1]
        assert reported == [51] and outbox.lost == 51
    finally:
        outbox.close(timeout=1.0)


def _flush_in_a_thread(outbox: Outbox, counts: list[int]) -> tuple[threading.Thread,
                                                                   threading.Event, list[object]]:
    """Flush ``outbox`` in a thread of its own. The list returned gets what the flush
    returned (``"closed"`` if it raised :class:`ConnectionClosed`), then how many messages
    were counted as lost (``counts``) when it did."""
    seen: list[object] = []
    returned = threading.Event()

    def flush() -> None:
        try:
            seen.append(outbox.flush(WAIT))
        except ConnectionClosed:
            seen.append("closed")
        seen.append(sum(counts))
        returned.set()

    thread = threading.Thread(target=flush, name="flushing")
    thread.start()
    return thread, returned, seen


class _FiftyBehindOne:
    """An outbox with one message on its way in ``sink`` and 50 queued behind it; the
    report of those 50 as lost (``on_lost``) is held until :attr:`release` is set, with
    :attr:`counting` set meanwhile; :attr:`counts` lists the counts reported."""

    def __init__(self, sink: Callable[[list[str]], Awaitable[None]],
                 sending: threading.Event) -> None:
        self.counting, self.release = threading.Event(), threading.Event()
        self.counts: list[int] = []
        self.outbox = Outbox(sink, max_bytes=1 << 20, on_failure=lambda exc, count: None,
                             on_lost=self._lost, name="test")
        self.outbox.put('["a:b",[0],{}]')
        assert sending.wait(WAIT)
        for i in range(1, 51):
            self.outbox.put(f'["a:b",[{i}],{{}}]')

    def _lost(self, count: int) -> None:
        if count == 50:
            self.counting.set()
            self.release.wait(WAIT)
        self.counts.append(count)

    def close(self) -> None:
        self.release.set()
        self.outbox.close(timeout=1.0)


def test_a_flush_that_meets_a_failure_returns_once_every_lost_message_is_counted() -> None:
    """The loop counts the failed batch, then the messages queued behind it, which takes
    a while when they are thousands; a flush that saw the failure in between returned
    with the batch counted alone, and the next flush reported the rest again (a peer
    killed mid-stream: the second flush said False)."""
    sending, fail = threading.Event(), threading.Event()

    async def sink(batch: list[str]) -> None:
        sending.set()
        deadline = time.monotonic() + WAIT
        while not fail.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        raise ConnectionResetError("the peer reset the connection")

    held = _FiftyBehindOne(sink, sending)
    try:
        fail.set()
        assert held.counting.wait(WAIT)
        thread, returned, seen = _flush_in_a_thread(held.outbox, held.counts)
        returned.wait(0.5)  # the old outbox's flush returned here, with 1 counted
        held.release.set()
        thread.join(WAIT)
        assert seen == ["closed", 51]
    finally:
        held.close()


def test_a_flush_that_a_close_wakes_returns_once_the_dropped_messages_are_counted() -> None:
    """Closing drops what is queued and wakes the flushes waiting behind it: they were
    woken before the dropped messages were counted, and could report none of them."""
    sending = threading.Event()

    async def sink(batch: list[str]) -> None:
        sending.set()
        await asyncio.sleep(WAIT)  # cancelled by close()

    held = _FiftyBehindOne(sink, sending)
    try:
        thread, returned, seen = _flush_in_a_thread(held.outbox, held.counts)
        closing = threading.Thread(target=held.outbox.close, kwargs={"timeout": 0},
                                   name="closing")
        closing.start()
        assert held.counting.wait(WAIT)
        returned.wait(0.5)  # the old outbox's flush returned here, with none of the 50 counted
        held.release.set()
        thread.join(WAIT)
        closing.join(WAIT)
        assert seen in ([True, 50], [True, 51]), seen  # 51: the batch on its way, cancelled
    finally:
        held.close()


def test_pending_counts_the_batch_on_its_way_until_the_peer_acknowledges_it() -> None:
    """A peer that hangs after taking a batch: its messages showed in neither ``pending``
    nor ``sent`` (an operator saw ``pending 0, sent 0`` for 10 s, then 50 lost)."""
    sending = threading.Event()
    answer = threading.Event()

    async def sink(batch: list[str]) -> None:
        sending.set()
        deadline = time.monotonic() + WAIT
        while not answer.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    outbox = Outbox(sink, max_bytes=1 << 20, on_failure=lambda exc, count: None, name="test")
    try:
        for i in range(50):
            outbox.put(f'["hung:x",[{i}],{{}},{{}}]')
        assert sending.wait(WAIT)
        assert (outbox.pending, outbox.sent) == (50, 0)
        answer.set()
        assert outbox.flush(WAIT)
        assert (outbox.pending, outbox.sent) == (0, 50)
    finally:
        outbox.close(0)
