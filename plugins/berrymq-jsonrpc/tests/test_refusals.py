"""Refusals on real sockets (issue 10): a full outbox, a full queue of the peer, an
oversized request, a callback address where nothing listens. Each refusal names its
setting, and nothing a call accepted is lost without a count and a reason."""

from __future__ import annotations

import gc
import json
import logging
import socket
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.settings import SETTINGS, STREAM_SETTINGS
from berrymq_jsonrpc.transport import RemoteConnection, RemoteTransport
from helpers import serve
from probe_tools import request, send_request, tcp_call

import berrymq
from berrymq.bus import Bus
from berrymq.identifier import Identifier
from berrymq.message import Message
from berrymq.testing import free_port

Factory = Callable[..., Bus]
WAIT = 10.0
TOKEN = "t" * 43


# -- a peer that answers the opening request, then reads nothing --------------------------


class DeafPeer:
    """A raw server that answers ``connect_oneway`` with a token and then never reads
    again (nor answers): what a stalled or overwhelmed node looks like to a sender. Over
    ``tcp`` a JSON line, over ``http`` a keep-alive POST."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT)
        self.url = f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}"
        self.conn: socket.socket | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, conn: socket.socket) -> Any:
        data = b""
        if self.scheme == "tcp":
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                data += chunk
            return json.loads(data)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += conn.recv(65536)
        return json.loads(body)

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:  # closed (or timed out) before any client came
            return
        request = self._read_request(conn)
        if request is None:
            return
        answer = json.dumps({"jsonrpc": "2.0", "result": TOKEN, "id": request["id"]}).encode()
        if self.scheme == "tcp":
            conn.sendall(answer + b"\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(answer) + answer)
        self.conn = conn  # kept open, never read again
        self.ready.set()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        self.thread.join(WAIT)


@pytest.fixture(params=["tcp", "http"])
def deaf_peer(request: pytest.FixtureRequest) -> Iterator[DeafPeer]:
    peer = DeafPeer(request.param)
    yield peer
    peer.close()


def test_a_full_outbox_blocks_then_raises_queue_full_naming_outbox_bytes(
        bus_factory: Factory, deaf_peer: DeafPeer, wait_for: Callable[..., Any]) -> None:
    scheme = deaf_peer.scheme
    limit = 2 * 1024 * 1024
    client = bus_factory(**{f"jsonrpc_{scheme}": {"outbox_bytes": limit, "outbox_wait": 0.1,
                                                  "timeout": 30}})
    connection = client.transport(scheme).connect_oneway(deaf_peer.url, 60)
    assert isinstance(connection, RemoteConnection)
    assert deaf_peer.ready.wait(WAIT)
    outbox = connection.link.outbox
    payload = "x" * (256 * 1024)  # each message is 256 KiB of JSON and a little more
    accepted = 0
    most = 0
    errors: list[str] = []  # the texts: an exception's frames would hold its message
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(40):  # 10 MiB offered: every byte of it would be held without a bound
            started = time.monotonic()
            try:
                connection.send(Message(Identifier("big:x"), (i, payload), {}))
            except berrymq.QueueFull as exc:
                assert time.monotonic() - started >= 0.09  # the sender waited for room first
                errors.append(str(exc))
            else:
                accepted += 1
            most = max(most, outbox.queued_bytes)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # memory is bounded: what waits stays under the setting, and the rest was refused
    assert most <= limit
    assert accepted <= limit // len(payload) + 2  # the bound, and one batch on its way
    assert len(errors) == 40 - accepted
    assert held < limit + 2 * 1024 * 1024, held  # not the 10 MiB offered
    assert "setting outbox_bytes" in errors[0] and str(limit) in errors[0]
    assert not connection.closed  # a full outbox refuses, it does not break the connection
    # the peer goes away: everything accepted is reported, nothing vanishes
    deaf_peer.close()
    stats = client.transport(scheme).service.stats  # type: ignore[attr-defined]
    # closed first, counted as it is torn down (on another thread): wait for the count
    wait_for(lambda: connection.closed and stats.losses().get(
        "not sent: connection failed or closed") == accepted, WAIT,
        "the connection to notice the peer is gone and count what it held")
    assert outbox.sent == 0
    assert connection.losses == {"not sent: connection failed or closed": accepted}
    print(f"{scheme}: offered 40 x {len(payload)} B, accepted {accepted}, refused "
          f"{len(errors)}, most waiting {most} B (outbox_bytes {limit}), Python memory "
          f"held {held} B")


def test_a_full_outbox_in_messages_names_outbox_size(
        bus_factory: Factory, deaf_peer: DeafPeer, wait_for: Callable[..., Any]) -> None:
    scheme = deaf_peer.scheme
    client = bus_factory(**{f"jsonrpc_{scheme}": {"outbox_size": 5, "outbox_wait": 0.2,
                                                  "timeout": 30}})
    connection = client.transport(scheme).connect_oneway(deaf_peer.url, 60)
    assert isinstance(connection, RemoteConnection)
    assert deaf_peer.ready.wait(WAIT)
    outbox = connection.link.outbox
    # the first goes out alone (and is never answered); 5 more wait; the 7th is refused
    connection.send(Message(Identifier("small:x"), (0,), {}))
    wait_for(lambda: outbox.on_its_way == 1, WAIT, "the first message to be on its way")
    for i in range(1, 6):
        connection.send(Message(Identifier("small:x"), (i,), {}))
    with pytest.raises(berrymq.QueueFull, match=r"5 messages wait .*setting outbox_size"):
        connection.send(Message(Identifier("small:x"), (6,), {}))
    assert outbox.pending == 6  # the 5 waiting and the one on its way


# -- a peer whose queue is full: refused messages are reported, the connection stays ---------


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_refusals_by_a_full_queue_leave_the_connection_and_outbox_open(
        bus_factory: Factory, scheme: str) -> None:
    node, port = serve(bus_factory, scheme, queue_size=5)
    url = f"{scheme}://127.0.0.1:{port}"
    others = berrymq.Queue("other:*", bus=node)
    client = bus_factory()
    transport = client.transport(scheme)
    store = transport.connect_via_queue(url, Identifier("job:*"), 60)
    connection = transport.connect_oneway(url, 60)
    assert isinstance(connection, RemoteConnection)
    node.subscribe("price:quote", lambda message: 2 * message.args[0], weak=False)
    for i in range(50):
        connection.send(Message(Identifier("job:x"), (i,), {}))
    # a question behind them waits for them, and is answered: the refusals are not its own
    replies = client.ask("price:quote", 21, timeout=WAIT)
    assert replies and all(reply == 42 for reply in replies)  # (one per connection)
    with pytest.raises(berrymq.QueueFull, match=r"refused 45 message\(s\).*setting queue_size"):
        connection.flush(WAIT)
    # the connection and its outbox go on: later messages are delivered
    assert not connection.closed
    for i in range(20):
        connection.send(Message(Identifier("other:x"), (i,), {}))
    assert connection.flush(WAIT) is True
    assert [others.get(timeout=WAIT).args[0] for _ in range(20)] == list(range(20))
    # the five the queue took are there, in order; the 45 refused are counted with reason
    assert [store.get(timeout=WAIT).args[0] for _ in range(5)] == list(range(5))
    assert connection.losses == {"refused: queue full": 45}
    assert connection.link.outbox.sent == 5 + 20
    client_stats = transport.service.stats  # type: ignore[attr-defined]
    assert client_stats.losses() == {"refused: queue full": 45}
    # room again in the queue: the same connection delivers there again
    connection.send(Message(Identifier("job:x"), ("again",), {}))
    assert connection.flush(WAIT) is True
    assert store.get(timeout=WAIT).args == ("again",)
    # and the bus's flush says the refusals with False, not an exception, once
    for i in range(10):
        connection.send(Message(Identifier("job:x"), (i,), {}))
    assert client.flush(WAIT) is False
    assert client.flush(WAIT) is True


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_refusals_on_an_interconnection_are_counted_and_it_stays_open(
        bus_factory: Factory, scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    node, port = serve(bus_factory, scheme, queue_size=3)
    url = f"{scheme}://127.0.0.1:{port}"
    client = bus_factory()
    transport = client.transport(scheme)
    if scheme == "http":
        transport.listen("http://127.0.0.1:0")  # the node calls this one back
    store = transport.connect_via_queue(url, Identifier("job:*"), 60)
    connection = transport.interconnect(url, 60)
    assert isinstance(connection, RemoteConnection)
    with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
        for i in range(10):
            client.twitter("job:x", i)
        assert client.flush(WAIT) is False  # seven were refused
    assert [store.get(timeout=WAIT).args[0] for _ in range(3)] == [0, 1, 2]
    assert connection.losses == {"refused: queue full": 7}
    assert [r for r in caplog.records if "on this connection so far, which stays open"
            in r.getMessage()]  # logged (once per burst)
    got = berrymq.Queue("later:*", bus=node)
    client.twitter("later:x", "still open")
    assert client.flush(WAIT) is True
    assert got.get(timeout=WAIT).args == ("still open",)


# -- every refusal that comes from a setting names it -----------------------------------------


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_too_large_names_the_setting(bus_factory: Factory, scheme: str) -> None:
    _, port = serve(bus_factory, scheme, max_size=2048)
    body = json.dumps(request("connect_oneway", {"ttl": 1, "pad": "x" * 4000})).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        send_request(sock, scheme, body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    error = json.loads(data.rpartition(b"\r\n\r\n")[2] if scheme == "http" else data)["error"]
    assert error["code"] == p.TOO_LARGE == -32003
    assert error["data"] == {"limit": 2048, "setting": "max_size"}


def test_queue_full_names_queue_size_or_max_queued_bytes(bus_factory: Factory) -> None:
    _, port = serve(bus_factory, "tcp", queue_size=2, max_queued_bytes=10_000)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        tcp_call(sock, request("connect_via_queue", {"identifier": "few:*"}, 1))
        tcp_call(sock, request("connect_via_queue", {"identifier": "big:*"}, 2))
        sender = tcp_call(sock, request("connect_oneway", {}, 3))["result"]
        few = [[f"few:{i}", [i], {}] for i in range(4)]
        error = tcp_call(sock, request("send_messages", {"token": sender, "messages": few}, 4))
        assert error["error"]["code"] == p.QUEUE_FULL
        assert error["error"]["data"] == {"refused": [2, 3], "setting": "queue_size", "limit": 2}
        big = [["big:x", ["x" * 6000], {}], ["big:y", ["y" * 6000], {}]]
        error = tcp_call(sock, request("send_messages", {"token": sender, "messages": big}, 5))
        assert error["error"]["data"] == {"refused": [1], "setting": "max_queued_bytes",
                                          "limit": 10_000}
        one = {"token": sender, "identifier": "few:z"}
        error = tcp_call(sock, request("send_message", one, 6))
        assert error["error"]["data"] == {"refused": [0], "setting": "queue_size", "limit": 2}


# -- interconnect: a callback address where nothing listens -----------------------------------


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_unreachable_callback_fails_the_interconnect_at_once(
        bus_factory: Factory, scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    node, port = serve(bus_factory, scheme)
    dead = f"{scheme}://127.0.0.1:{free_port()}"  # nothing listens there
    params = {"addr": dead, "token": TOKEN, "ttl": 60}
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), socket.create_connection(
            ("127.0.0.1", port), timeout=WAIT) as sock:
        if scheme == "tcp":
            answer = tcp_call(sock, request("interconnect", params))
        else:
            send_request(sock, "http", json.dumps(request("interconnect", params)).encode())
            data = b""
            while not data.endswith(b"}"):
                data += sock.recv(65536)
            answer = json.loads(data.rpartition(b"\r\n\r\n")[2])
    assert time.monotonic() - started < 5
    error = answer["error"]
    assert error["code"] == p.NOT_AVAILABLE == -32007 and error["message"] == "Not available"
    assert dead in error["data"] and "cannot call back" in error["data"]
    assert not node.transport(scheme).service.sessions  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_interconnect_raises_when_the_node_cannot_call_back(
        bus_factory: Factory, serve_node: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    node = serve_node("--http", "127.0.0.1:0")
    client = bus_factory()
    transport = client.transport("http")
    assert isinstance(transport, RemoteTransport)
    transport.listen("http://127.0.0.1:0")
    # this client announces a callback address where nothing listens (as one behind a
    # firewall would): the node (another process) tries it and refuses the interconnect
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(transport, "_own_address", lambda: dead)
    with pytest.raises(berrymq.RemoteError, match="cannot call back " + dead) as info:
        transport.interconnect(node.urls["http"], 60)
    assert info.value.code == p.NOT_AVAILABLE
    assert not transport.service.sessions  # the client's own session is gone too
    assert not client.connections()
    # the node left no session behind and logged no traceback
    status = json.loads(_get(node.urls["http"] + "/status"))
    assert status["sessions"] == []
    node.process.terminate()
    node.process.wait(WAIT)
    assert node.process.stderr is not None
    assert "Traceback" not in node.process.stderr.read()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        return response.read()  # type: ignore[no-any-return]


def test_every_setting_of_the_transports_is_documented() -> None:

    docs = Path(__file__).resolve().parents[3] / "docs"
    settings = (docs / "settings.md").read_text(encoding="utf-8")
    for key in {**SETTINGS, **STREAM_SETTINGS}:
        assert f"| `{key}` |" in settings, f"docs/settings.md does not describe {key}"
    protocol = (docs / "protocol.md").read_text(encoding="utf-8")
    for key in ("outbox_size", "outbox_bytes", "outbox_wait", "max_size", "queue_size",
                "max_queued_bytes"):
        assert f"`{key}`" in protocol, f"docs/protocol.md's Limits do not name {key}"


def test_a_refused_message_is_not_kept_after_its_answer(bus_factory: Factory) -> None:
    """The refusal's traceback held the frames it came through, some of which held the
    refusal: a cycle that kept each refused message until the cyclic collector ran. With
    large messages it seldom runs (few objects are made): on Python 3.13 a node refusing
    68 messages of 1 MiB held 68 MiB more. The collector is held off here, so a message
    kept that way stays kept."""
    _, port = serve(bus_factory, "tcp", max_queued_bytes=1000)
    payload = "r" * (200 * 1024)
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            def rpc(method: str, **params: Any) -> Any:
                return tcp_call(sock, {"jsonrpc": "2.0", "method": method, "params": params,
                                       "id": 1})

            rpc("connect_via_queue", identifier="big:*", ttl=60)
            sender = rpc("connect_oneway", ttl=60)["result"]
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(10):  # 2 MiB refused
                answer = rpc("send_message", token=sender, identifier="big:x", args=[payload])
                assert answer["error"]["data"]["setting"] == "max_queued_bytes", answer
            held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held < 2 * len(payload), held  # not one message per refusal
