"""``serve --monitor``'s address: the status routes and nothing else, bounded.
(The ``--monitor`` option run through ``berrymq serve`` is tested in test_status.py of
berrymq-jsonrpc.)"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
from collections.abc import Iterator

import pytest
from berrymq_jsonrpc.monitor import Monitor
from berrymq_jsonrpc.status import status_snapshot
from berrymq_jsonrpc_http.monitor_port import MAX_CLIENTS, start_monitor, status_server
from berrymq_jsonrpc_http.server import Server
from helpers import Buses

from berrymq.cli import UsageError
from berrymq.transports.ioloop import io_loop

WAIT = 10.0


@pytest.fixture
def stop() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        io_loop.run(server.stop(), WAIT)


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes (a reset after an answer counts as
    the close: it may come while the rest of the request is unread)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def request(method: str, path: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode()


def test_serve_monitor_serves_the_status_routes_and_nothing_else(
        buses: Buses, stop: list[Server], capsys: pytest.CaptureFixture[str]) -> None:
    started = start_monitor(buses(), argparse.Namespace(monitor="127.0.0.1:0"))
    assert started is not None
    server, url = started
    stop.append(server)
    assert url.startswith("http://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1])
    status = exchange(port, request("GET", "/status"))
    assert status.startswith(b"HTTP/1.1 200 OK\r\n"), status
    assert "sessions" in json.loads(status.split(b"\r\n\r\n", 1)[1])
    assert exchange(port, request("GET", "/metrics")).startswith(b"HTTP/1.1 200 OK\r\n")
    assert exchange(port, request("GET", "/nothing")).startswith(b"HTTP/1.1 404 ")
    call = b'{"jsonrpc":"2.0","method":"connect_oneway","id":1}'
    posted = exchange(port, request("POST", "/", "Content-Type: application/json\r\n"
                                    f"Content-Length: {len(call)}\r\n") + call)
    assert posted.startswith(b"HTTP/1.1 405 "), posted  # no JSON-RPC on this address
    assert b"GET /, /status, /metrics, /network, and no JSON-RPC: send to the node's --http or " \
           b"--tcp address" in posted
    assert b"\r\nAllow: GET, HEAD\r\n" in posted  # which a 405 must say (RFC 9110)
    head = exchange(port, request("HEAD", "/status"))  # a health check: no body
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n"), head
    assert b"Content-Type: application/json\r\n" in head
    refused = exchange(port, request("HEAD", "/nothing"))
    assert refused.startswith(b"HTTP/1.1 404 ") and refused.endswith(b"\r\n\r\n"), refused


def test_serve_monitor_refuses_what_it_cannot_serve(buses: Buses,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BERRYMQ_SECRET", raising=False)
    with pytest.raises(UsageError, match="not a loopback address"):
        start_monitor(buses(), argparse.Namespace(monitor="0.0.0.0:0"))
    with pytest.raises(UsageError, match="--monitor '127.0.0.1:http': expected HOST:PORT"):
        start_monitor(buses(), argparse.Namespace(monitor="127.0.0.1:http"))
    with pytest.raises(UsageError, match="--monitor takes a http:// address"):
        start_monitor(buses(), argparse.Namespace(monitor="tcp://127.0.0.1:0"))
    with pytest.raises(UsageError, match="nothing after"):
        start_monitor(buses(), argparse.Namespace(monitor="http://127.0.0.1:0/status"))


def test_the_status_address_bounds_what_it_reads(buses: Buses, stop: list[Server]) -> None:
    server = status_server(Monitor(buses(), host="127.0.0.1", secret=None), read_timeout=0.5)
    stop.append(server)
    port = io_loop.run(server.start("127.0.0.1", 0), WAIT)
    # a head that never ends is cut at the deadline, answered 408
    cut = exchange(port, b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert cut.startswith(b"HTTP/1.1 408 ") and b"read_timeout (0.5s)" in cut, cut
    # a head over 16 KiB is refused, not read to its end
    answer = exchange(port, b"GET /status HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer


def test_the_status_address_holds_a_bounded_number_of_connections(
        buses: Buses, stop: list[Server]) -> None:
    server = status_server(Monitor(buses(), host="127.0.0.1", secret=None))
    stop.append(server)
    port = io_loop.run(server.start("127.0.0.1", 0), WAIT)
    held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            for _ in range(MAX_CLIENTS)]
    try:
        refused = exchange(port, request("GET", "/status"))
        assert refused.startswith(b"HTTP/1.1 503 "), refused
        assert b"max_connections" in refused  # the data's "setting": the cap it was over
        # ... which is the status server's own: no setting to change is named
        assert b"connections open, its fixed cap" in refused and b"(setting" not in refused
    finally:
        for sock in held:
            sock.close()


def test_connections_the_status_address_refuses_are_counted_in_refused(
        buses: Buses, stop: list[Server]) -> None:
    """The node's ``refused`` counts the ``--monitor`` address's refusals too, as
    ``monitor: max_connections`` (a 503 there was counted nowhere)."""
    bus = buses()
    started = start_monitor(bus, argparse.Namespace(monitor="127.0.0.1:0"))
    assert started is not None
    server, url = started
    stop.append(server)
    port = int(url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            for _ in range(MAX_CLIENTS)]
    try:
        assert exchange(port, request("GET", "/status")).startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in held:
            sock.close()
    assert status_snapshot(bus)["refused"] == {"total": 1,
                                               "reasons": {"monitor: max_connections": 1}}


def test_the_status_address_closes_with_its_bus(buses: Buses) -> None:
    """It was kept by nobody: after the node closed (``serve`` stopped by SIGTERM, while
    it still closed) it accepted and answered for a bus closing or closed (found by a
    review)."""
    bus = buses()
    started = start_monitor(bus, argparse.Namespace(monitor="127.0.0.1:0"))
    assert started is not None
    server, url = started
    assert server.address == url
    port = int(url.rsplit(":", 1)[1])
    assert exchange(port, request("GET", "/status")).startswith(b"HTTP/1.1 200 OK")
    bus.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
