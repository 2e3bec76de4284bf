"""flush(): send, flush, then check: the other node's receivers and queues already have
every message (issue 11), over real sockets, both transports."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import berrymq
from berrymq import Bus, Message

N = 500


@pytest.fixture(params=["tcp", "http"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[Bus, str]]:
    bus = Bus(name=f"flush-server-{request.param}")
    url = bus.transport(request.param).listen(f"{request.param}://127.0.0.1:0")
    yield bus, url
    bus.close()


def test_send_message_then_flush_then_the_server_has_them_all(
        server: tuple[Bus, str], berrymq_bus: Bus) -> None:
    bus, url = server
    got: list[Message] = []
    queue = berrymq.Queue("job:*", bus=bus)
    bus.subscribe("job:*", got.append, weak=False)
    berrymq.connect_oneway(url)
    for i in range(N):
        berrymq.send_message("job:done", i)
    assert berrymq.flush(30) is True
    # no wait: flush returned after the server's receivers ran
    assert [m.args[0] for m in got] == list(range(N))
    assert queue.qsize() == N  # and its queues


def test_twitter_to_an_interconnected_peer_then_flush(
        server: tuple[Bus, str], berrymq_bus: Bus) -> None:
    bus, url = server
    got: list[Message] = []
    bus.subscribe("job:*", got.append, weak=False)
    if url.startswith("http"):  # over HTTP the peer calls this node back
        berrymq.init_connection("http://127.0.0.1:0")
    berrymq.interconnect(url)
    for i in range(N):
        berrymq.twitter("job:done", i)
    assert berrymq.flush(30) is True
    assert [m.args[0] for m in got] == list(range(N))


def test_flush_says_false_when_the_timeout_passes_first(
        server: tuple[Bus, str], berrymq_bus: Bus) -> None:
    bus, url = server
    release = threading.Event()
    got: list[Message] = []

    def slow(message: Message) -> None:
        release.wait(30)
        got.append(message)

    bus.subscribe("job:*", slow, weak=False)
    connection = berrymq.connect_oneway(url)
    berrymq.send_message("job:slow", 1)
    try:
        assert berrymq.flush(0.3) is False
        assert connection.flush(0.1) is False
    finally:
        release.set()
    assert berrymq.flush(30) is True
    assert [m.id for m in got] == ["job:slow"]


def test_flush_with_nothing_sent_is_true_at_once(berrymq_bus: Bus) -> None:
    assert berrymq.flush(0) is True


def test_flush_is_false_after_a_loss(berrymq_bus: Bus) -> None:
    bus = Bus(name="flush-dies")
    url = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    berrymq.connect_oneway(url)
    berrymq.send_message("job:first", 1)
    assert berrymq.flush(30) is True
    bus.close()  # the server goes away: what is sent now cannot be delivered
    try:
        for i in range(50):
            berrymq.send_message("job:lost", i)
    except berrymq.ConnectionClosed:
        pass  # refused at once once the client noticed: reported to the sender
    else:
        assert berrymq.flush(30) is False


@pytest.mark.parametrize(("timeout", "error"), [
    (math.nan, ValueError), (-1, ValueError), ("1", TypeError), (True, TypeError)])
def test_a_connection_refuses_a_bad_timeout_by_name(
        server: tuple[Bus, str], berrymq_bus: Bus, timeout: Any, error: type) -> None:
    """``connection.flush`` and a queue connection's ``get`` follow the one rule of every
    wait, as ``berrymq.flush`` and ``Queue.get`` do: NaN and -1 read as no wait (False,
    Empty at once), a string raised a bare TypeError of a comparison."""
    _, url = server
    connection = berrymq.connect_via_queue(url, "job:*")
    with pytest.raises(error, match="timeout must be"):
        connection.flush(timeout)
    with pytest.raises(error, match="timeout must be"):
        berrymq.get(timeout=timeout)


def test_a_connection_waits_an_infinite_or_huge_timeout_as_none(
        server: tuple[Bus, str], berrymq_bus: Bus) -> None:
    """inf and 1e10 raised OverflowError from deep inside (the platform's longest wait)."""
    _, url = server
    connection = berrymq.connect_via_queue(url, "job:*")
    connection.send(Message("job:x", (1,)))
    assert connection.flush(math.inf) is True
    assert connection.flush(1e10) is True
    assert berrymq.get(timeout=1e10).args == (1,)


@pytest.mark.parametrize("ttl", [math.nan, math.inf, True, 0, "5"])
def test_a_bad_ttl_is_refused_by_name_before_anything_is_sent(
        server: tuple[Bus, str], berrymq_bus: Bus, ttl: Any) -> None:
    """NaN and inf were refused only by the JSON encoder ('Out of range float values
    are not JSON compliant'), True only by the peer."""
    _, url = server
    with pytest.raises(ValueError, match="ttl must be a positive, finite number of seconds"):
        berrymq.connect_oneway(url, ttl=ttl)
