"""A server that stops reading (SIGSTOP) while connected: what the bridge holds is
bounded in bytes as well as in count, every message it accepted is either sent or
counted, and ``close()`` and ``flush(timeout)`` keep their time limits although
nats-py's publish waits for room (and swallows a cancellation meanwhile)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from berrymq_nats import BrokerBufferFull, NatsBridge, confirming
from berrymq_nats.testing import NatsServer, bridge_of, settle
from helpers import interrupted_at_exit

from berrymq import Bus

pytestmark = pytest.mark.broker

PAD = "p" * (200 * 1024)


@pytest.fixture
def paused(nats_server: NatsServer) -> Iterator[NatsServer]:
    yield nats_server
    if nats_server.process is not None:
        nats_server.resume()


def fill(bus: Bus, limit: int, bound: str = "buffer_bytes = 1048576") -> int:
    """Send 200 KiB messages until the bridge refuses one; how many it accepted."""
    for accepted in range(limit):
        try:
            bus.twitter("stalled:x", accepted, PAD)
        except BrokerBufferFull as exc:
            assert bound in str(exc)
            return accepted
    return limit


def stalled_bridge(bus: Bus, server: NatsServer, buffer_limit: int = 300,
                   buffer_bytes: int = 1024 * 1024) -> NatsBridge:
    bridge = bridge_of(bus, server.url, buffer_limit=buffer_limit, buffer_bytes=buffer_bytes,
                       send_timeout=0.3, connect_timeout=1.0)
    settle(bridge)
    server.pause()
    return bridge



def closes_in_time_counting(bridge: NatsBridge, accepted: int) -> None:
    """close() returns within connect_timeout (1 s) and a little, and every accepted
    message is counted: not sent, or sent to a server that never confirmed it."""
    started = time.monotonic()
    bridge.close()
    took = time.monotonic() - started
    assert took < 1.0 + 0.9, f"close() took {took:.2f}s with connect_timeout = 1s"
    assert bridge.losses.own == accepted, (bridge.losses.counts, accepted)


def test_what_waits_for_a_stalled_server_is_bounded_in_bytes_and_counted(
        paused: NatsServer, make_bus: Callable[..., Bus]) -> None:
    bus = make_bus("stalled")
    bridge = stalled_bridge(bus, paused)
    accepted = fill(bus, 300)
    # 1 MiB waiting for the I/O thread, and what nats-py buffers (2 MiB) and the socket holds
    # (the kernel's socket buffers vary: far below the 300 the count bound allows)
    assert 3 <= accepted <= 80, accepted
    closes_in_time_counting(bridge, accepted)


def test_close_keeps_its_time_limit_and_counts_every_accepted_message(
        paused: NatsServer, make_bus: Callable[..., Bus]) -> None:
    """Bounded in count (the bytes bound far away): nats-py's publish waits for room with
    a message of the bridge's buffered, which closing must not wait for, nor forget."""
    bus = make_bus("closing")
    bridge = stalled_bridge(bus, paused, buffer_limit=20, buffer_bytes=64 * 1024 * 1024)
    accepted = fill(bus, 100, bound="buffer_limit = 20")
    closes_in_time_counting(bridge, accepted)


def test_flush_keeps_its_timeout_while_publishing_waits(
        paused: NatsServer, make_bus: Callable[..., Bus], recwarn: Any) -> None:
    bus = make_bus("flushing")
    bridge = stalled_bridge(bus, paused)
    fill(bus, 300)  # nats-py's publish now waits for room in its buffer
    started = time.monotonic()
    assert not bridge.flush(1.5)
    took = time.monotonic() - started
    assert took < 1.5 + 0.5, f"flush(1.5) took {took:.2f}s"


def test_what_is_published_and_not_confirmed_is_bounded_in_bytes(
        paused: NatsServer, make_bus: Callable[..., Bus], monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher stops at UNCONFIRMED_BYTES unconfirmed, whatever asyncio and nats-py
    buffer below it (on Python 3.12.0-3.12.8 and 3.13.0-3.13.1 asyncio does not: 300 of
    these messages, 60 MB, were taken). Lowered here to 1 MiB so that it is the bound
    reached first on any Python: about 1 MiB in flight and 1 MiB waiting for the I/O thread."""
    monkeypatch.setattr(confirming, "UNCONFIRMED_BYTES", 1024 * 1024)
    bus = make_bus("unconfirmed")
    bridge = stalled_bridge(bus, paused)
    accepted = fill(bus, 300)
    assert 5 <= accepted <= 12, accepted
    confirmations = bridge.outbox.confirmations
    assert confirmations.published_bytes - confirmations.confirmed_bytes <= 1024 * 1024 + len(PAD) + 100
    closes_in_time_counting(bridge, accepted)


#: Joins the NATS server of argv[1], says so, and once told sends 3,000 messages and ends.
_ENDS_WITH_A_BACKLOG = """
import logging, sys
logging.basicConfig()
logging.getLogger("berrymq.nats").setLevel(logging.DEBUG)
import berrymq
berrymq.connect_broker(sys.argv[1], connect_timeout=60)
print("joined", flush=True)
sys.stdin.readline()
for i in range(3000):
    berrymq.twitter("bye:n", i, "x" * 1000)
"""


def test_ctrl_c_while_closing_at_exit_ends_the_wait_and_counts_what_is_left(
        paused: NatsServer) -> None:
    """A program that ends while its NATS server is stalled waits at exit (up to
    connect_timeout) to send what its bridge holds; Ctrl-C then ends the wait with every
    message it held reported as lost, not with a traceback from an exit hook and nothing
    said about the messages."""
    with subprocess.Popen([sys.executable, "-c", _ENDS_WITH_A_BACKLOG, paused.url],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        assert child.stderr is not None
        try:
            assert child.stdout.readline() == "joined\n"
            paused.pause()
            child.stdin.write("go\n")
            child.stdin.flush()  # it ends well before the 60 s of connect_timeout
            stderr = interrupted_at_exit(child, "at exit: closing 1 NATS bridge(s)")
        finally:
            child.kill()
    assert "interrupted while closing NATS bridges at exit" in stderr, stderr
    totals = re.findall(r"\((\d+) lost in all\)", stderr)
    assert totals and int(totals[-1]) == 3000, stderr


_INTERRUPTED_AS_CLOSING_BEGINS = """
import logging, sys
logging.basicConfig()
import berrymq
berrymq.connect_broker(sys.argv[1], connect_timeout=60)
print("joined", flush=True)
sys.stdin.readline()
for i in range(300):
    berrymq.twitter("bye:n", i, "x" * 100)
bus = berrymq.get_bus()
stop_following = bus.remove_subscription_listener

def interrupted(listener):
    stop_following(listener)
    raise KeyboardInterrupt  # Ctrl-C just as the bridge's closing at exit began

bus.remove_subscription_listener = interrupted
"""


def test_ctrl_c_as_a_bridge_begins_to_close_at_exit_counts_what_it_held(
        paused: NatsServer) -> None:
    """A bridge leaves the list of those to close at exit as its closing begins: Ctrl-C
    just after that found none left to give up, and its 300 messages went uncounted,
    nothing said (seen once under load in CI)."""
    with subprocess.Popen([sys.executable, "-c", _INTERRUPTED_AS_CLOSING_BEGINS, paused.url],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline() == "joined\n"
            paused.pause()
            _, stderr = child.communicate("go\n", timeout=60)
        finally:
            child.kill()
    assert "interrupted while closing NATS bridges at exit" in stderr, stderr
    assert "(1 more bridge(s) not closed)" in stderr, stderr
    totals = re.findall(r"\((\d+) lost in all\)", stderr)
    assert totals and int(totals[-1]) == 300, stderr
