"""The line limits of a JSON-RPC over TCP connection, at either end, on real sockets: a
request line is at most ``max_size`` bytes; an answer line, while answers are owed to that
end, up to 4x ``max_size`` (an answer to a batch, or to an ``ask``, can be larger than any
request).

The accepting end (a node) is driven by a raw client that interconnects with ``addr``
null, so that the node asks it over the same connection; the connecting end (a berryMQ
client) is driven by a raw server playing the node.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.status import status_snapshot
from helpers import Buses, serve
from probe_tools import JsonLines, request

from berrymq.bus import Bus

MAX_SIZE = 2048
WAIT = 10.0
TOKEN = "t" * 43
ANSWER = "x" * (3 * MAX_SIZE)  # an answer over max_size, under 4x max_size


def oversized_request(size: int) -> dict[str, Any]:
    """A ``send_messages`` request whose line is ``size`` bytes long."""
    body = request("send_messages", {"token": TOKEN, "messages": [["big:x", [""], {}]]}, 7)
    body["params"]["messages"][0][1][0] = "y" * (size - len(json.dumps(body)))
    assert len(json.dumps(body)) == size
    return body


def asked_over_the_connection(node: Bus, port: int) -> tuple[JsonLines, list[Any], threading.Thread]:
    """A raw client interconnected with ``node`` (``addr`` null: the node sends back over
    this connection), and the node asking it, on a thread: (the client's lines, where the
    node's replies go, the thread)."""
    lines = JsonLines.connect(port)
    lines.send(request("interconnect", {"addr": None, "token": TOKEN, "ttl": 60}))
    assert "result" in lines.read()
    replies: list[Any] = []
    thread = threading.Thread(target=lambda: replies.append(node.ask("big:q", timeout=WAIT)))
    thread.start()
    return lines, replies, thread


def test_the_accepting_end_takes_an_answer_up_to_4x_max_size(buses: Buses) -> None:
    node, port = serve(buses, "tcp", max_size=MAX_SIZE)
    lines, replies, thread = asked_over_the_connection(node, port)
    try:
        asked = lines.read()
        assert asked["method"] == p.METHOD_ASK
        lines.send({"jsonrpc": "2.0", "result": [{"value": ANSWER}], "id": asked["id"]})
        thread.join(WAIT)
        assert replies == [[ANSWER]]
        # the connection goes on, and its requests are still held to max_size
        lines.send(request("network", {"token": TOKEN}, 2))
        assert lines.read()["id"] == 2
    finally:
        lines.close()


def test_an_answer_that_comes_after_its_ask_gave_up_is_still_an_answer(buses: Buses) -> None:
    """The node's ask gives up waiting; the answer, over max_size, comes after: it is read
    as an answer and dropped, and the connection goes on (it was read as an oversized
    request, and the interconnection closed)."""
    node, port = serve(buses, "tcp", max_size=MAX_SIZE)
    lines = JsonLines.connect(port)
    try:
        lines.send(request("interconnect", {"addr": None, "token": TOKEN, "ttl": 60}))
        assert "result" in lines.read()
        replies: list[Any] = []
        thread = threading.Thread(target=lambda: replies.append(node.ask("big:q", timeout=0.2)))
        thread.start()
        asked = lines.read()
        assert asked["method"] == p.METHOD_ASK
        thread.join(WAIT)
        [[gave_up]] = replies  # no reply in time: the peer's entry says so
        assert "no answer within 0.2s" in str(gave_up)
        lines.send({"jsonrpc": "2.0", "result": [{"value": ANSWER}], "id": asked["id"]})
        lines.send(request("network", {"token": TOKEN}, 2))
        assert lines.read()["id"] == 2
        assert status_snapshot(node)["refused"]["reasons"] == {}
    finally:
        lines.close()


def test_the_accepting_end_refuses_a_request_over_max_size_while_answers_are_owed(
        buses: Buses) -> None:
    node, port = serve(buses, "tcp", max_size=MAX_SIZE)
    lines, replies, thread = asked_over_the_connection(node, port)
    try:
        assert lines.read()["method"] == p.METHOD_ASK  # an answer is owed to the node now
        lines.send(oversized_request(MAX_SIZE + 100))
        error = lines.read()
        assert error["id"] is None and error["error"]["code"] == p.TOO_LARGE
        assert error["error"]["data"] == {"limit": MAX_SIZE, "setting": "max_size"}
        assert lines.ended()
        thread.join(WAIT)
        assert len(replies) == 1 and replies[0] != [ANSWER]  # the ask ended with the connection
        assert status_snapshot(node)["refused"]["reasons"] == {"max_size": 1}
    finally:
        lines.close()


class PlayedNode:
    """A raw server playing a node for one berryMQ client: it answers ``connect_oneway``
    with a token, then does what the test says on the connection (:attr:`lines`)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT)
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lines: JsonLines | None = None
        self.ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.lines = JsonLines(conn)
        opened = self.lines.read()
        self.lines.send({"jsonrpc": "2.0", "result": TOKEN, "id": opened["id"]})
        self.ready.set()

    def connected(self) -> JsonLines:
        assert self.ready.wait(WAIT) and self.lines is not None
        return self.lines

    def close(self) -> None:
        if self.lines is not None:
            self.lines.close()
        self.listener.close()


@pytest.fixture
def played() -> Iterator[PlayedNode]:
    node = PlayedNode()
    yield node
    node.close()


def client_of(buses: Buses, played: PlayedNode) -> Bus:
    bus = buses(jsonrpc_tcp={"max_size": MAX_SIZE})
    bus.transport("tcp").connect_oneway(played.url, 60)
    return bus


def test_the_connecting_end_takes_an_answer_up_to_4x_max_size(
        buses: Buses, played: PlayedNode) -> None:
    bus = client_of(buses, played)
    lines = played.connected()
    replies: list[Any] = []
    thread = threading.Thread(target=lambda: replies.append(bus.ask("big:q", timeout=WAIT)))
    thread.start()
    asked = lines.read()
    assert asked["method"] == p.METHOD_ASK
    lines.send({"jsonrpc": "2.0", "result": [{"value": ANSWER}], "id": asked["id"]})
    thread.join(WAIT)
    assert replies == [[ANSWER]]


def test_the_connecting_end_refuses_a_request_over_max_size(
        buses: Buses, played: PlayedNode) -> None:
    client_of(buses, played)
    lines = played.connected()
    lines.send(oversized_request(MAX_SIZE + 100))  # under 4x max_size, and no answer owed
    error = lines.read()
    assert error["id"] is None and error["error"]["code"] == p.TOO_LARGE
    assert error["error"]["data"] == {"limit": MAX_SIZE, "setting": "max_size"}
    assert lines.ended()
