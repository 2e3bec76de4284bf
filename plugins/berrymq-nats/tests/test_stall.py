"""A NATS server that stalls (SIGSTOP, then SIGCONT: a paused host or VM) for longer than
a flush's timeout: the bridge keeps reading afterwards, or, when ``nats-py``'s reading
task has ended anyway, says so, counts what may be lost and reconnects; it never goes on
as "connected" while nothing is read."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_nats.losses import IN_FLIGHT, NOT_SENT_AT_CLOSE
from berrymq_nats.testing import Recorder, bridge_of, settle
from nats.errors import FlushTimeoutError

from berrymq import Bus
from berrymq.transports.ioloop import io_loop

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]
Poll = Callable[..., None]


def test_a_flush_that_timed_out_in_a_stall_does_not_stop_the_reading(
    nats_server: Any, make_bus: MakeBus,
) -> None:
    """A PONG that comes after its flush gave up must not end the reading: nats-py 2.x
    would set it on the cancelled future of the flush, and its reading task would end."""
    a, b = make_bus("a"), make_bus("b")
    ba, bb = bridge_of(a, nats_server.url), bridge_of(b, nats_server.url)
    got = Recorder()
    b.subscribe("job:*", got, weak=False)
    settle(ba, bb)
    nats_server.pause()
    try:
        assert bb.flush(1.0) is False  # no PONG within the second
    finally:
        nats_server.resume()
    for i in range(200):
        a.twitter("job:n", i)
    assert ba.flush(10.0)
    assert len(got.wait(200, 15.0)) == 200
    assert got.args == list(range(200))
    assert bb.flush(10.0) and bb.state == "connected"
    assert bb.losses.total == 0 and bb.reconnects == 0


def test_when_nats_py_stops_reading_the_bridge_says_so_and_reconnects(
    nats_server: Any, make_bus: MakeBus, poll: Poll, caplog: pytest.LogCaptureFixture,
) -> None:
    """nats-py's own ``flush(timeout)`` still has the defect: after a stall, its reading
    task ends. The bridge notices at once, logs it, reconnects (what it published and
    the server had not confirmed is counted), and receives again."""
    a, b = make_bus("a"), make_bus("b")
    ba = bridge_of(a, nats_server.url)
    bb = bridge_of(b, nats_server.url, reconnect_wait=0.05)
    got, sent_by_b = Recorder(), Recorder()
    b.subscribe("job:*", got, weak=False)
    a.subscribe("from-b:*", sent_by_b, weak=False)
    settle(ba, bb)
    client = bb.client
    assert client is not None
    nats_server.pause()
    try:
        # leaves its cancelled future behind
        with pytest.raises(FlushTimeoutError):
            io_loop.run(client.flush(1), 10.0)
        for i in range(10):
            b.twitter("from-b:n", i)
        assert bb.flush(1.0) is False  # written to the socket, not confirmed
    finally:
        with caplog.at_level(logging.ERROR, "berrymq.nats"):
            nats_server.resume()
            poll(lambda: bb.reconnects == 1 and bb.state == "connected",
                 what="the bridge to reconnect")
    assert "nats-py's task that reads" in caplog.text and "reconnecting" in caplog.text
    assert "stopped reading" in (bb.last_error or "")
    assert bb.losses.counts == {IN_FLIGHT: 10}  # possibly lost: counted, not silent
    assert len(sent_by_b.wait(10, 10.0)) == 10  # (the server had them, in fact)
    assert bb.flush(10.0) is False  # the ten counted since the last flush
    for i in range(100):
        a.twitter("job:n", i)
    assert ba.flush(10.0)
    assert len(got.wait(100, 15.0)) == 100
    assert bb.flush(10.0) is True


def test_closing_while_the_server_stalls_counts_every_loss_before_returning(
    nats_server: Any, make_bus: MakeBus, caplog: pytest.LogCaptureFixture,
) -> None:
    """More messages than may wait for a confirmation (2,000), sent while the server is
    stopped: close() gives up on the last flush after ``connect_timeout`` and returns
    with all of them counted (they went on counting after it returned, seconds later)."""
    a = make_bus("a")
    ba = bridge_of(a, nats_server.url, connect_timeout=1.0)
    settle(ba)
    nats_server.pause()
    try:
        for i in range(3000):
            a.twitter("job:n", i)
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, "berrymq.nats"):
            ba.close()
        took = time.monotonic() - started
        assert ba.state == "closed"
        assert ba.losses.total == 3000, ba.losses.counts
        assert set(ba.losses.counts) <= {IN_FLIGHT, NOT_SENT_AT_CLOSE}
        assert took < 8.0  # bounded: the last flush, then closing the client, 1 s each
        assert "last flush failed" in caplog.text and "3000 lost in all" in caplog.text
    finally:
        nats_server.resume()
    assert ba.flush() is False
