"""berrymq_jsonrpc.taken: a message taken from a queue for an answer that never left the
node is counted lost. A client that pipelined ``get_nowait`` requests, read none of the
answers and reset the connection made the node take thousands of messages out of its
queue that went nowhere: counted as sent, not as lost, and logged nowhere."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc.outbox import NOT_SENT
from berrymq_jsonrpc.status import status_snapshot
from helpers import serve, wait_for

from berrymq.bus import Bus

MESSAGES = 3000


def accepted(node: Bus, scheme: str) -> list[Any]:
    """The node's accepted connections: LineChannels, or HTTP StreamWriters."""
    server = node.transport(scheme)._servers[0]  # type: ignore[attr-defined]
    return list(server.channels) if scheme == "tcp" else list(server.connections)


def buffered(node: Bus, scheme: str) -> int:
    """The bytes the node's accepted connections hold unsent (not handed to the kernel)."""
    return sum(c.transport.get_write_buffer_size() for c in accepted(node, scheme)
               if c.transport is not None)


def lost_unsent(node: Bus) -> int:
    return int(status_snapshot(node)["lost"]["reasons"].get(NOT_SENT, 0))


def framed(scheme: str, port: int, body: dict[str, Any]) -> bytes:
    text = json.dumps(body).encode()
    if scheme == "tcp":
        return text + b"\n"
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (port, len(text))) + text


def open_queue(scheme: str, port: int) -> str:
    """A connect_via_queue session of ``big:*``: its token."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(framed(scheme, port, {"jsonrpc": "2.0", "method": "connect_via_queue",
                                           "params": {"identifier": "big:*", "ttl": 600},
                                           "id": 1}))
        data = b""
        while not data.rstrip().endswith(b"}"):
            data += sock.recv(65536)
    return str(json.loads(data.rpartition(b"\r\n\r\n")[2] or data)["result"])


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_messages_taken_for_a_client_that_reset_without_reading_are_counted_lost(
        bus_factory: Callable[..., Bus], scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    node, port = serve(bus_factory, scheme)
    token = open_queue(scheme, port)
    for i in range(MESSAGES):
        node.twitter("big:x", i, "x" * 2000)
    gets = b"".join(framed(scheme, port, {"jsonrpc": "2.0", "method": "get_nowait",
                                          "params": {"token": token}, "id": i})
                    for i in range(MESSAGES))
    greedy = socket.socket()
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(("127.0.0.1", port))
    # the node stops reading the requests once it holds its answers unread: the sending
    # blocks then, until the reset below ends it
    sender = threading.Thread(target=_send_all, args=(greedy, gets), daemon=True)
    sender.start()
    wait_for(lambda: buffered(node, scheme) > 0, 30, "the node to hold answers unsent")
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    greedy.close()  # a reset: what the node had not sent yet is thrown away
    sender.join(10)

    lost = wait_for(lambda: lost_unsent(node), 10, "the messages not sent to be counted lost")
    left, _ = node.transport(scheme).service.sessions[token].queue.held()  # type: ignore[attr-defined]
    assert lost + left <= MESSAGES  # none counted twice, nor one still queued
    assert "taken from a queue by get were not sent" in caplog.text


def _send_all(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_answers_read_whole_before_a_reset_are_not_counted_lost(
        bus_factory: Callable[..., Bus]) -> None:
    """The node looked at its buffer only as it wrote: an answer partly buffered when
    written, then read whole by the client, counted lost when the client reset later."""
    node, port = serve(bus_factory, "tcp")
    token = open_queue("tcp", port)
    big = "x" * 900_000
    for i in range(8):
        node.twitter("big:x", i, big)
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", port))
    reader.sendall(b"".join(framed("tcp", port, {"jsonrpc": "2.0", "method": "get_nowait",
                                                 "params": {"token": token}, "id": i})
                            for i in range(8)))
    with reader.makefile("rb") as lines:
        answers = [json.loads(lines.readline()) for _ in range(8)]
    assert [answer["result"][1][0] for answer in answers] == list(range(8))
    (channel,) = accepted(node, "tcp")
    wait_for(lambda: channel.in_flight.held == 0, 10, "the node to see its answers sent")
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reader.close()
    wait_for(lambda: not accepted(node, "tcp"), 10, "the node to see the reset")
    assert lost_unsent(node) == 0


def test_an_http_answer_not_read_within_read_timeout_is_not_sent_later(
        bus_factory: Callable[..., Bus]) -> None:
    """After its last answer's drain timed out, a connection was closed, not aborted: the
    message was counted lost, and then sent all the same when the client read it."""
    node, port = serve(bus_factory, "http", read_timeout=0.5, max_size=8 << 20)
    token = open_queue("http", port)
    node.twitter("big:x", "x" * 7_000_000)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    body = json.dumps({"jsonrpc": "2.0", "method": "get_nowait", "params": {"token": token},
                       "id": 1}).encode()
    slow.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                 % (port, len(body)) + body)
    assert wait_for(lambda: lost_unsent(node), 10, "the unread answer to be counted") == 1
    received = 0
    slow.settimeout(10)
    with contextlib.suppress(ConnectionResetError):
        while chunk := slow.recv(1 << 20):
            received += len(chunk)
    slow.close()
    assert received < 7_000_000  # the connection was ended: the message never came
