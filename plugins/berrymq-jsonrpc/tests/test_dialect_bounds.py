"""A JSON-RPC 1.0 peer that answers its call-backs with no end, or a byte at a time, and
1.0 requests whose numbers go past what a wait takes (found by a hostile review).

The peers here are real sockets on loopback, answering from a thread; the node is a real
one, interconnected over HTTP as the original berryMQ's client does it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.dialect_link import MAX_ANSWER
from berrymq_jsonrpc.status import status_snapshot
from helpers import serve

import berrymq
from berrymq.bus import Bus
from berrymq.message import Message
from berrymq.timeouts import LONGEST_WAIT, seconds_left

TIMEOUT = 10.0

#: How a fake peer answers a call-back: given its socket and the test's end.
Answering = Callable[[socket.socket, threading.Event], None]


def v1_call(port: int, method: str, *params: Any) -> dict[str, Any]:
    """A 1.0 call as the original's client makes it: the whole answer object."""
    body = json.dumps({"id": None, "method": method, "params": list(params)}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/JSON", body, {"Content-Type": "text/xml"})
        answer: dict[str, Any] = json.loads(conn.getresponse().read())
        return answer
    finally:
        conn.close()


@pytest.fixture
def fake_peer() -> Iterator[Callable[[Answering], int]]:
    """A 1.0 peer's server that reads each call-back's head and answers it with
    ``answering``, one connection after the other; its port."""
    stop = threading.Event()
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(answering: Answering) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve_each() -> None:
            with contextlib.suppress(OSError):  # the listener closed: the test's end
                while not stop.is_set():
                    sock, _ = listener.accept()
                    with sock, contextlib.suppress(OSError):  # the node let go
                        if sock.recv(65536):  # a call-back (the node's check sends none)
                            answering(sock, stop)

        thread = threading.Thread(target=serve_each, daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    yield start
    stop.set()
    for listener in listeners:
        with contextlib.suppress(OSError):  # wakes an accept() under way (close does not)
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
    for thread in threads:
        thread.join(TIMEOUT)


def interconnected(bus_factory: Callable[..., Bus], peer_port: int, **settings: Any
                   ) -> tuple[Bus, str]:
    """A node serving HTTP, interconnected by a 1.0 peer at ``peer_port``: the node and
    the peer's token."""
    bus, port = serve(bus_factory, "http", **settings)
    token = str(uuid.uuid4())
    answer = v1_call(port, "interconnect", ["127.0.0.1", peer_port], token, 1000)
    assert answer["result"] == token, answer
    return bus, token


def test_a_peer_answering_without_end_is_read_no_further_than_an_answer_can_be(
        bus_factory: Callable[..., Bus], fake_peer: Callable[[Answering], int],
        wait_for: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    sent = [0]

    def endless(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 4000000000\r\n\r\n")
        chunk = b" " * 65536
        while not stop.is_set() and sent[0] < 256 * 1024 * 1024:  # the node read it all
            sock.sendall(chunk)
            sent[0] += len(chunk)

    bus, token = interconnected(bus_factory, fake_peer(endless))
    service = bus.transport("http").service
    bus.twitter("node:hello")
    wait_for(lambda: token not in service.sessions, TIMEOUT, "the session to close")
    assert f"answered with more than {MAX_ANSWER} bytes" in caplog.text
    assert bus.flush(TIMEOUT) is False  # the message it could not forward: reported


def test_a_peer_answering_a_byte_at_a_time_loses_its_link_at_the_timeout(
        bus_factory: Callable[..., Bus], fake_peer: Callable[[Answering], int],
        wait_for: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    # http.client's timeout is per read: each byte in time kept the link for as long as
    # the peer dripped (40 s, 90 s), and every sender waited for room behind it
    def drip(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not stop.wait(0.1):
            sock.sendall(b" ")

    bus, token = interconnected(bus_factory, fake_peer(drip), timeout=1.0)
    service = bus.transport("http").service
    start = time.monotonic()
    bus.twitter("node:hello")
    wait_for(lambda: token not in service.sessions, TIMEOUT, "the session to close")
    assert time.monotonic() - start < 1.0 + 5.0
    assert "did not answer send_message within 1s" in caplog.text


def test_a_v1_ask_with_a_timeout_past_the_platforms_waits_is_answered(
        bus_factory: Callable[..., Bus]) -> None:
    # a wait of 1e10 s raised OverflowError inside the node when the receiver had not
    # finished yet: answered Internal error after the receivers ran
    bus, port = serve(bus_factory, "http")
    release = threading.Event()

    def slow(message: berrymq.Message) -> str:
        release.wait(TIMEOUT)
        return "done"

    bus.subscribe("slow:x", slow, weak=False)
    timer = threading.Timer(0.3, release.set)  # the receiver outlasts the call's start
    timer.start()
    try:
        answer = v1_call(port, p.METHOD_ASK, "slow:x", [1], {}, 1e10)
    finally:
        timer.cancel()
        release.set()
    assert answer["error"] is None, answer
    assert [entry["value"] for entry in answer["result"]] == ["done"]


def test_seconds_left_to_a_far_deadline_is_a_wait_the_platform_takes() -> None:
    assert seconds_left(time.monotonic() + 1e12) == LONGEST_WAIT


def test_a_circle_of_1_0_interconnects_delivers_a_message_once_per_node(
        bus_factory: Callable[..., Bus], node: tuple[object, str, str],
        wait_for: Callable[..., Any]) -> None:
    # four 1.0 interconnects (two each way; anyone on loopback may ask for them) made one
    # message go round two nodes for ever, 1,200 deliveries a second: 1.0 carried no uid.
    # Node b is a process of its own (a node refuses to call back a server of its own
    # process, which would be a circle at once).
    a, a_port = serve(bus_factory, "http")
    b_port = int(node[2].rsplit(":", 1)[1])
    for token in ("x" * 36, "z" * 36):
        assert v1_call(a_port, "interconnect", ["127.0.0.1", b_port], token, 1000)["result"]
        assert v1_call(b_port, "interconnect", ["127.0.0.1", a_port], token, 1000)["result"]
    got: list[Message] = []
    a.subscribe("storm:*", got.append, weak=False)
    a.twitter("storm:once")
    # b has it twice (a link each), takes the second for a duplicate and hands the first
    # on to a over its other link: a knows its own uid, and the message ends there
    wait_for(lambda: status_snapshot(a)["messages"]["duplicates"] >= 1, TIMEOUT,
             "the message back at the node that sent it")
    assert a.flush(TIMEOUT)
    assert [m.id for m in got] == ["storm:once"]
    assert status_snapshot(a)["messages"]["in"] == 1
