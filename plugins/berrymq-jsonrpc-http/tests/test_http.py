"""What is particular to HTTP: the server's HTTP handling and the keep-alive client.
(The protocol itself is tested over both transports in tests/remote.)"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from helpers import Buses, serve

import berrymq
from berrymq.bus import Bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings


@pytest.fixture
def buses() -> Iterator[Buses]:
    made = Buses()
    yield made
    made.close_all()


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes or a full answer came."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


CALL = b'{"jsonrpc":"2.0","method":"connect_oneway","id":1}'


def post(body: bytes, headers: str = "Content-Type: application/json\r\n",
         version: str = "HTTP/1.1", method: str = "POST", path: str = "/",
         host: str = "127.0.0.1") -> bytes:
    return (f"{method} {path} {version}\r\nHost: {host}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.mark.parametrize(("request_", "status"), [
    (post(CALL, method="PUT"), b"405"),
    (post(CALL, method="DELETE"), b"405"),
    (post(CALL, method="GET", host="x"), b"421"),  # GET / is the status page: Host x is not the node
    (post(CALL, host="x"), b"421"),  # nor for JSON-RPC (DNS rebinding)
    (post(CALL, path="/rpc"), b"404"),
    (post(CALL, headers="Content-Type: text/plain\r\n"), b"415"),
    # a type a web page may POST without a preflight
    (post(CALL, headers="Content-Type: application/x-www-form-urlencoded\r\n"), b"415"),
    (b"POST / HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", b"411"),
    (b"POST / HTTP/1.1\r\nContent-Type: application/json\r\n\r\n", b"411"),
    (b"GARBAGE\r\n\r\n", b"400"),
])
def test_http_errors(buses: Buses, request_: bytes, status: bytes) -> None:
    _, port = serve(buses, "http")
    answer = exchange(port, request_)
    assert answer.split(b" ", 2)[1] == status, answer
    assert b"Connection: close" in answer


def test_keep_alive_serves_many_requests_on_one_connection(buses: Buses) -> None:
    _, port = serve(buses, "http")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        for i in range(50):
            body = json.dumps({"jsonrpc": "2.0", "method": "connect_oneway", "id": i}).encode()
            sock.sendall(post(body))
            assert reader.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert json.loads(reader.read(length))["id"] == i
        reader.close()


def test_notification_gets_204_and_http10_closes(buses: Buses) -> None:
    _, port = serve(buses, "http")
    note = b'{"jsonrpc":"2.0","method":"send_message","params":{"token":"x"}}'
    answer = exchange(port, post(note, version="HTTP/1.0"))
    assert answer.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Connection: close" in answer and b"Content-Length" not in answer


def test_expect_100_continue_like_curl(buses: Buses) -> None:
    _, port = serve(buses, "http")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = post(b"", headers="Content-Type: application/json\r\nExpect: 100-continue\r\n")
        sock.sendall(head.replace(b"Length: 0", f"Length: {len(CALL)}".encode()))
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(CALL)
        assert reader.readline().startswith(b"HTTP/1.1 200 OK")
        reader.close()


def test_stale_keep_alive_connection_is_replaced(buses: Buses) -> None:
    server, port = serve(buses, "http", read_timeout=0.3)
    client = buses()
    received = berrymq.Queue("s:*", bus=server)
    connection = client.transport("http").connect_oneway(f"http://127.0.0.1:{port}", 60)
    connection.send(berrymq.Message("s:one"))
    assert received.get(timeout=10).id == "s:one"
    # the server drops the idle connection; the client's next request opens a new one
    http_server = server.transport("http")._servers[0]  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while http_server.connections:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    connection.send(berrymq.Message("s:two"))
    assert received.get(timeout=10).id == "s:two"


def test_interconnect_over_http_needs_a_server_of_ones_own(buses: Buses) -> None:
    _, port = serve(buses, "http")
    client = buses()
    with pytest.raises(berrymq.ConnectionClosed, match="init_connection"):
        client.transport("http").interconnect(f"http://127.0.0.1:{port}", 60)


def test_disabled_plugin_is_named(buses: Buses) -> None:
    bus = buses.keep(Bus(plugins=PluginHost(Settings(disable=("jsonrpc-http",)))))
    with pytest.raises(berrymq.PluginNotAvailable, match="jsonrpc-http") as info:
        bus.transport("http")
    assert "enable" in str(info.value)
    missing = buses.keep(Bus(plugins=PluginHost(Settings(), entry_points=False)))
    with pytest.raises(berrymq.PluginNotAvailable, match=r"pip install \./plugins/berrymq-jsonrpc \./plugins/berrymq-jsonrpc-http"):
        missing.transport("http")
