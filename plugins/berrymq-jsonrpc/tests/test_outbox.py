"""The outbox of a connection (berrymq_jsonrpc.outbox): what a failure reports."""

from __future__ import annotations

import asyncio
import threading
import time

from berrymq_jsonrpc.outbox import Outbox

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
