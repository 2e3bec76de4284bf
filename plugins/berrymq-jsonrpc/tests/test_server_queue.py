"""Pulling a server's queue (style 03) from a server that does not hold a blocking ``get``
(an outside probe's finding): a JSON-RPC server answering *Queue is empty* at once, though
asked to wait, made ``get(timeout=5)`` spin at full speed (2.8 s of CPU in 5 s) and
``get()`` spin for ever. The server here is a real socket on loopback that answers each
line at once, from a thread, and counts the ``get`` requests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.connection import EARLY_EMPTY_PAUSE

import berrymq
from berrymq.bus import Bus
from berrymq.identifier import Identifier

TOKEN = "t" * 43


class EmptyAtOnce:
    """A TCP JSON-RPC server whose queue is always empty and says so at once."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.gets = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:  # closed before anyone came
            return
        with sock, sock.makefile("rb") as lines:
            for line in lines:
                request = json.loads(line)
                if "id" not in request:
                    continue
                method = request["method"]
                if method == p.METHOD_GET:
                    self.gets += 1
                    answer = {"error": {"code": p.EMPTY, "message": "Queue is empty"}}
                else:  # connect_via_queue, close_connection
                    answer = {"result": TOKEN if method == p.METHOD_CONNECT_VIA_QUEUE else "ok"}
                try:
                    sock.sendall(json.dumps({"jsonrpc": "2.0", "id": request["id"],
                                             **answer}).encode() + b"\n")
                except OSError:
                    return

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[EmptyAtOnce]:
    fake = EmptyAtOnce()
    yield fake
    fake.close()


def test_a_get_against_a_server_answering_empty_at_once_does_not_spin(
        server: EmptyAtOnce, bus_factory: Callable[..., Bus]) -> None:
    bus = bus_factory()
    connection = bus.transport("tcp").connect_via_queue(server.url, Identifier("job:*"), 60)
    start = time.monotonic()
    with pytest.raises(berrymq.Empty):
        connection.get(timeout=2.0)
    took = time.monotonic() - start
    assert 1.9 <= took < 10, took
    # one request per EARLY_EMPTY_PAUSE at most (and the first): thousands before
    assert server.gets <= 2.0 / EARLY_EMPTY_PAUSE + 2, server.gets
    connection.close()


@pytest.mark.parametrize("scheme", ["tcp", "http"])
@pytest.mark.parametrize("closing", ["bus", "connection"])
def test_a_get_waiting_when_this_side_closes_is_told_the_connection_is_closed(
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any], scheme: str,
        closing: str) -> None:
    """It was told "the peer no longer knows this connection ... Unknown or expired
    token" (the node forgot the session because this side closed it), which sends the
    user looking for a ttl or a restart of the node (found by an outside audit)."""
    node = bus_factory()
    url = node.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    client = bus_factory()
    connection = client.transport(scheme).connect_via_queue(url, Identifier("job:*"), 100)
    store = next(iter(node.transport(scheme).service.sessions.values())).queue  # type: ignore[attr-defined]
    raised: list[BaseException] = []

    def get() -> None:
        try:
            connection.get(True, 30)
        except BaseException as exc:
            raised.append(exc)

    getter = threading.Thread(target=get)
    getter.start()
    wait_for(lambda: store.waiting == 1, 10, "the get to wait at the node")
    (client.close if closing == "bus" else connection.close)()
    getter.join(10)
    assert len(raised) == 1 and type(raised[0]) is berrymq.ConnectionClosed, raised
    assert str(raised[0]) == f"connection to {url} is closed"
