"""flush(): send, flush, then check: the other node's receivers and queues already have
every message (issue 11), over real sockets, both transports."""

from __future__ import annotations

import threading
from collections.abc import Iterator

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
