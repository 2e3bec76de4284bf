"""The node's caps and rules, on real sockets: connections per node and per client,
sessions, callback addresses of ``interconnect``, a deadline for a whole request."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc import sessions
from berrymq_jsonrpc.input_end import InputEnd
from berrymq_jsonrpc.limits import Admission, queued_bytes_for
from berrymq_jsonrpc.sessions import ENTRY_OVERHEAD, SessionQueue
from berrymq_jsonrpc.status import metrics_text, status_snapshot
from berrymq_jsonrpc_tcp import calls as tcp_calls
from helpers import serve, wait_for
from probe_tools import OPEN_SOCKETS, WAIT, drip, http_call, open_socket, request, tcp_call
from prometheus_client.parser import text_string_to_metric_families

from berrymq.bursts import BurstLog
from berrymq.bus import Bus
from berrymq.errors import QueueFull, RemoteError, TransportError
from berrymq.identifier import Identifier
from berrymq.testing import free_port
from berrymq.wire import byte_size, dumps

Factory = Callable[..., Bus]


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (10 s at most)."""
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def call(scheme: str, sock: socket.socket, obj: Any) -> Any:
    if scheme == "tcp":
        return tcp_call(sock, obj)
    status, body = http_call(sock, obj)
    assert status == 200, body
    return json.loads(body)


def refused(scheme: str, sock: socket.socket) -> dict[str, Any]:
    """The one answer a connection over a cap gets, before the server closes it."""
    data = read_all(sock)
    if scheme == "http":
        head, _, data = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), head
    error = json.loads(data)
    assert error["id"] is None
    return error["error"]  # type: ignore[no-any-return]


# -- 1. caps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_connections_over_the_caps_are_answered_and_closed(
        bus_factory: Factory, wait_for: Callable[..., Any], scheme: str) -> None:
    bus, port = serve(bus_factory, scheme, max_connections=3, max_connections_per_client=2)
    ping = request("get_nowait", {"token": "x" * 43})
    held = [open_socket(port), open_socket(port)]
    for sock in held:  # admitted: answered
        assert call(scheme, sock, ping)["error"]["code"] == p.UNKNOWN_TOKEN
    third = open_socket(port)  # a third from the same client address
    error = refused(scheme, third)
    assert error["code"] == p.LIMIT_REACHED and error["message"] == "Limit reached"
    assert error["data"]["setting"] == "max_connections_per_client"
    assert error["data"]["limit"] == 2
    assert "max_connections_per_client" in error["data"]["detail"]
    held.append(open_socket(port, "127.0.0.2"))  # another client: within max_connections
    assert call(scheme, held[-1], ping)["error"]["code"] == p.UNKNOWN_TOKEN
    error = refused(scheme, open_socket(port, "127.0.0.3"))
    assert error["data"] == {"setting": "max_connections", "limit": 3,
                             "detail": error["data"]["detail"]}
    # a closed connection frees its place
    held.pop(0).close()
    admission = bus.transport(scheme).admission  # type: ignore[attr-defined]
    wait_for(lambda: admission.open == 2, what="the closed connection released")
    again = open_socket(port)
    assert call(scheme, again, ping)["error"]["code"] == p.UNKNOWN_TOKEN


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_sessions_over_the_cap_are_refused(bus_factory: Factory, scheme: str) -> None:
    _, port = serve(bus_factory, scheme, max_sessions=2)
    sock = open_socket(port)
    tokens = [call(scheme, sock, request("connect_oneway", {"ttl": 60}, i))["result"]
              for i in range(2)]
    answer = call(scheme, sock, request("connect_via_queue", {"identifier": "a:*"}, 3))
    error = answer["error"]
    assert error["code"] == p.LIMIT_REACHED and error["message"] == "Limit reached"
    assert error["data"]["setting"] == "max_sessions" and error["data"]["limit"] == 2
    closed = call(scheme, sock, request("close_connection", {"token": tokens[0]}, 4))
    assert closed["result"] == "ok"
    assert type(call(scheme, sock, request("connect_oneway", {}, 5))["result"]) is str


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_interconnect_token_over_128_characters_is_refused(
        bus_factory: Factory, scheme: str) -> None:
    """The node sends a peer's token back with every message it forwards: a token of
    half a megabyte made one 10-byte message cost 150 MB of writes over 300 sessions."""
    bus, port = serve(bus_factory, scheme)
    sock = open_socket(port)
    addr = None if scheme == "tcp" else f"http://127.0.0.1:{port}"
    error = call(scheme, sock, request("interconnect", {"addr": addr, "token": "t" * 129}, 1))
    assert error["error"]["code"] == p.INVALID_PARAMS, error
    assert error["error"]["data"] == "'token' must be at most 128 characters"
    assert not bus.transport(scheme).service.sessions  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_ttl_over_max_ttl_is_refused(bus_factory: Factory, scheme: str) -> None:
    """No client keeps sessions for good (a ttl of 1e308 once did): a session asks for
    at most ``max_ttl`` seconds, whichever method opens it."""
    bus, port = serve(bus_factory, scheme, max_ttl=100)
    sock = open_socket(port)
    assert type(call(scheme, sock, request("connect_oneway", {"ttl": 100}, 1))["result"]) is str
    for i, (method, params) in enumerate([
            ("connect_oneway", {"ttl": 1e308}),
            ("connect_via_queue", {"identifier": "a:*", "ttl": 100.5}),
            ("interconnect", {"addr": None if scheme == "tcp" else f"http://127.0.0.1:{port}",
                              "token": "t" * 43, "ttl": 101})]):
        error = call(scheme, sock, request(method, params, 2 + i))["error"]
        assert error["code"] == p.LIMIT_REACHED, error
        assert error["data"]["setting"] == "max_ttl"
        assert error["data"]["limit"] == 100 and type(error["data"]["limit"]) is int
        assert "at most 100 seconds" in error["data"]["detail"]
    assert status_snapshot(bus)["refused"]["reasons"] == {"max_ttl": 3}
    # a request that leaves ttl out asks for nothing: it gets max_ttl, under the default
    service = bus.transport(scheme).service  # type: ignore[attr-defined]
    for i, (method, params) in enumerate([("connect_oneway", {}),
                                          ("connect_via_queue", {"identifier": "a:*"})]):
        token = call(scheme, sock, request(method, params, 10 + i))["result"]
        assert service.sessions[token].ttl == 100
    client = bus_factory()
    with pytest.raises(RemoteError, match="max_ttl"):
        client.transport(scheme).connect_oneway(f"{scheme}://127.0.0.1:{port}", 1000)
    # this node's own session of an interconnection is held to its own cap, named so
    if scheme == "http":
        client.transport("http").listen("http://127.0.0.1:0")
    with pytest.raises(TransportError, match=r"ttl may be at most 86400 seconds \(setting max_ttl"):
        client.transport(scheme).interconnect(f"{scheme}://127.0.0.1:{port}", 1e6)
    # the value refused as given (it read 'not 86400', rounded to the limit)
    with pytest.raises(TransportError, match=r"not 86400\.0000001; ask for less"):
        client.transport(scheme).interconnect(f"{scheme}://127.0.0.1:{port}", 86400.0000001)
    assert not client.transport(scheme).service.sessions  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_refusals_are_counted_in_status_and_metrics(bus_factory: Factory, scheme: str) -> None:

    bus, port = serve(bus_factory, scheme, max_sessions=1, max_connections_per_client=1)
    sock = open_socket(port)
    assert type(call(scheme, sock, request("connect_oneway", {"ttl": 60}))["result"]) is str
    for i in range(2):  # two sessions over max_sessions
        answer = call(scheme, sock, request("connect_oneway", {"ttl": 60}, 2 + i))
        assert answer["error"]["data"]["setting"] == "max_sessions"
    error = refused(scheme, open_socket(port))  # a second connection from the same client
    assert error["data"]["setting"] == "max_connections_per_client"
    snapshot = status_snapshot(bus)
    assert snapshot["refused"] == {"total": 3, "reasons": {
        "max_connections_per_client": 1, "max_sessions": 2}}
    samples = {tuple(s.labels.items()): s.value
               for f in text_string_to_metric_families(metrics_text(snapshot))
               if f.name == "berrymq_refused" for s in f.samples}
    assert samples == {(("reason", "max_connections_per_client"),): 1,
                       (("reason", "max_sessions"),): 2}


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_request_not_whole_within_read_timeout_is_answered_and_counted(
        bus_factory: Factory, scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    """A client that stalls in the middle of a request is told why its connection ends
    (TCP: -32009 naming read_timeout; it was closed with no answer at all; HTTP: 408),
    counted in ``refused`` as ``read_timeout`` and logged (neither was done)."""
    bus, port = serve(bus_factory, scheme, read_timeout=0.3)
    logged = "within read_timeout (0.3s)"
    with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            if scheme == "tcp":
                sock.sendall(b'{"jsonrpc":"2.0","method":"connect_oneway"')
            else:
                sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 100\r\n\r\n{")
            answer = read_all(sock)
        # the count follows the answer, on the I/O loop; the line is written at once, or
        # within the burst's interval (5 s) when an earlier test's stall began a burst
        deadline = time.monotonic() + WAIT
        while (status_snapshot(bus)["refused"]["total"] < 1
               or not any(logged in r.getMessage() for r in caplog.records)):
            assert time.monotonic() < deadline, "neither counted nor logged"
            time.sleep(0.01)
    if scheme == "tcp":
        error = json.loads(answer)["error"]
        assert error["code"] == p.LIMIT_REACHED
        assert (error["data"]["setting"], error["data"]["limit"]) == ("read_timeout", 0.3)
    else:
        assert answer.startswith(b"HTTP/1.1 408 ") and b"read_timeout (0.3s)" in answer
    assert status_snapshot(bus)["refused"] == {"total": 1, "reasons": {"read_timeout": 1}}


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_request_over_max_size_is_counted_as_refused(bus_factory: Factory, scheme: str) -> None:
    """An operator sees clients that hit max_size: the request answered *Message too
    large* (over HTTP 413) and its connection closed count in ``refused`` as ``max_size``
    (they were in no counter at all), and the answer in the bytes out."""
    bus, port = serve(bus_factory, scheme, max_size=1024)
    body = json.dumps(request("send_message", {"token": "x", "identifier": "a:b",
                                               "args": ["x" * 2000]})).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if scheme == "tcp":
            sock.sendall(body + b"\n")
        else:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        answer = read_all(sock)
    assert str(p.TOO_LARGE).encode() in answer, answer
    snapshot = status_snapshot(bus)
    assert snapshot["refused"] == {"total": 1, "reasons": {"max_size": 1}}
    # the answer is counted in bytes out, as answers are (an HTTP body, a TCP line)
    body = answer.partition(b"\r\n\r\n")[2] if scheme == "http" else answer
    assert snapshot["bytes"]["out"] == len(body)


def test_what_session_queues_hold_takes_no_more_memory_than_max_queued_bytes_counts(
        bus_factory: Factory) -> None:
    """The cap bounds memory, not only bytes on the wire: a small message was counted at
    its 13 bytes of JSON and held as Python lists (about 256 bytes), so a client with
    unread queues took a node to 13-14 times max_queued_bytes (3.5 GB with the default)."""
    bus = bus_factory()
    store = SessionQueue(bus, Identifier("tiny:*"), 0, max_bytes=1 << 30)
    try:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            bus.twitter("tiny:x", i)
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        counted = queued_bytes_for(bus).total
        assert counted == sum(byte_size(f'["tiny:x",[{i}],{{}}]') + ENTRY_OVERHEAD
                              for i in range(20_000))
        assert held <= counted, (held, counted)
        assert store.get(0) == ["tiny:x", [0], {}]  # read back as it came
    finally:
        store.close()


def test_blocking_gets_leave_no_waiter_behind_and_end_in_time_linear_in_their_number(
        bus_factory: Factory) -> None:
    """Each waiting get added a done-callback to its connection's end, which asyncio
    removes by scanning all of them: the waits of one connection cost the square of their
    number (40,000 of them held the loop 27 s). And a get that timed out on an empty queue
    left its future in the queue until a message came, one more for every such get."""
    bus = bus_factory()
    store = SessionQueue(bus, Identifier("wait:*"), 0)
    waits = 40_000

    async def wait_in_line(timeout: float, ended: InputEnd) -> None:  # as a get waits
        place = store.line.join()
        try:
            await store.line.wait(place, timeout, ended)
        finally:
            store.line.leave(place, store.has_entries)

    async def wait_then_end() -> tuple[tuple[int, int], float]:
        ended = InputEnd()
        for _ in range(3):  # gets that time out on an empty queue
            await wait_in_line(0.001, ended)
        left_behind = store.waiting, ended.watched
        waiting = [asyncio.ensure_future(wait_in_line(60, ended)) for _ in range(waits)]
        await asyncio.sleep(0)  # every wait has begun
        assert store.waiting == ended.watched == waits
        started = time.monotonic()
        ended.end()
        await asyncio.gather(*waiting)
        return left_behind, time.monotonic() - started

    try:
        left_behind, took = asyncio.run(wait_then_end())
    finally:
        store.close()
    assert left_behind == (0, 0)
    assert store.waiting == 0
    assert took < 10, f"{waits} waiting gets took {took:.1f} s to end"


def test_a_message_is_written_once_for_every_session_queue_that_follows_it(
        bus_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A thousand queues wrote each message a thousand times, on the one delivery lane of
    a node: a client opening many queues made every message cost that much (a fan-out of
    1 KB messages 11 us per queue, now under 4)."""
    written: list[str] = []

    def counting(value: Any) -> str:
        text = dumps(value)
        written.append(text)
        return text

    monkeypatch.setattr(sessions, "dumps", counting)
    bus = bus_factory()
    stores = [SessionQueue(bus, Identifier("job:*"), 10) for _ in range(50)]
    try:
        bus.twitter("job:x", "x" * 1000)
        bus.twitter("job:y", 2)
        assert len(written) == 2
        assert [store.get(0) for store in stores] == [["job:x", ["x" * 1000], {}]] * 50
        assert [store.get(0) for store in stores] == [["job:y", [2], {}]] * 50
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_bytes_in_all_session_queues_are_capped(bus_factory: Factory, scheme: str) -> None:

    bus, port = serve(bus_factory, scheme, max_queued_bytes=1300)
    sock = open_socket(port)
    ids = iter(range(100))

    def rpc(method: str, **params: Any) -> Any:
        return call(scheme, sock, request(method, params, next(ids)))

    jobs = rpc("connect_via_queue", identifier="job:*", ttl=60)["result"]
    other = rpc("connect_via_queue", identifier="other:*", ttl=60)["result"]
    sender = rpc("connect_oneway", ttl=60)["result"]
    payload = "x" * 300  # an entry of 317 bytes as JSON, 413 counted: three fit in 1300
    for _ in range(3):
        assert rpc("send_message", token=sender, identifier="job:a", args=[payload])[
            "result"] == "ok"
    assert queued_bytes_for(bus).total == 3 * (317 + ENTRY_OVERHEAD)
    # the other session's queue is empty, but the node's cap is reached: refused
    answer = rpc("send_message", token=sender, identifier="other:a", args=[payload])
    assert answer["error"]["code"] == p.QUEUE_FULL
    with pytest.raises(QueueFull, match="max_queued_bytes"):  # a sender on the node's bus
        bus.twitter("other:b", payload)
    assert rpc("get_nowait", token=other)["error"]["code"] == p.EMPTY
    # a message taken frees its bytes
    assert rpc("get_nowait", token=jobs)["result"] == ["job:a", [payload], {}]
    assert rpc("send_message", token=sender, identifier="other:a", args=[payload])[
        "result"] == "ok"
    assert rpc("get_nowait", token=other)["result"] == ["other:a", [payload], {}]
    # a closed session frees what its queue held
    assert rpc("close_connection", token=jobs)["result"] == "ok"
    assert queued_bytes_for(bus).total == 0


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_connections_closed_at_once_free_their_places(
        bus_factory: Factory, wait_for: Callable[..., Any], scheme: str) -> None:
    bus, port = serve(bus_factory, scheme)
    for _ in range(200):  # connect and close without a byte, as port scanners do
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    admission = bus.transport(scheme).admission  # type: ignore[attr-defined]
    wait_for(lambda: admission.open == 0, what="every closed connection released")
    ping = request("get_nowait", {"token": "x" * 43})
    assert call(scheme, open_socket(port), ping)["error"]["code"] == p.UNKNOWN_TOKEN


# -- 2. interconnect calls back only where allowed --------------------------------------------


def interconnect(scheme: str, sock: socket.socket, addr: str, **extra: Any) -> dict[str, Any]:
    params = {"addr": addr, "token": "t" * 43, "ttl": 60, **extra}
    return call(scheme, sock, request("interconnect", params))  # type: ignore[no-any-return]


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_interconnect_calls_back_only_allowed_hosts(bus_factory: Factory, scheme: str) -> None:
    bus, port = serve(bus_factory, scheme)
    sock = open_socket(port)
    started = time.monotonic()
    error = interconnect(scheme, sock, f"{scheme}://192.0.2.1:9")["error"]  # TEST-NET-1
    assert time.monotonic() - started < 5  # refused, not tried
    assert error["code"] == p.NOT_ALLOWED and error["message"] == "Not allowed"
    assert error["data"]["setting"] == "callback_hosts" and "loopback" in error["data"]["detail"]
    assert not bus.transport(scheme).service.sessions  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_address_with_a_user_name_or_password_is_refused(
        bus_factory: Factory, scheme: str) -> None:
    """berryMQ sends no credentials from an address: one holding them is refused, as an
    interconnect's callback and at the client's call, and never shown (they were kept,
    and shown in clear in /status, the page and the CLI)."""
    bus, port = serve(bus_factory, scheme)
    listener = socket.create_server(("127.0.0.1", 0))
    OPEN_SOCKETS.append(listener)
    addr = f"{scheme}://admin:hunter2@127.0.0.1:{listener.getsockname()[1]}"
    error = interconnect(scheme, open_socket(port), addr)["error"]
    assert error["code"] == -32602 and "hunter2" not in json.dumps(error)
    assert not bus.transport(scheme).service.sessions  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="holds no user name or password") as info:
        bus_factory().transport(scheme).connect_oneway(addr, 60)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_callback_hosts_setting_replaces_loopback(bus_factory: Factory, scheme: str) -> None:
    _, port = serve(bus_factory, scheme, callback_hosts=["127.0.0.2/32", "example.invalid"])
    sock = open_socket(port)
    error = interconnect(scheme, sock, f"{scheme}://127.0.0.1:9")["error"]
    assert error["code"] == p.NOT_ALLOWED and error["data"]["setting"] == "callback_hosts"
    listener = socket.create_server(("127.0.0.2", 0))
    OPEN_SOCKETS.append(listener)
    listener.settimeout(10)
    answer = interconnect(scheme, sock, f"{scheme}://127.0.0.2:{listener.getsockname()[1]}")
    assert type(answer["result"]) is str  # allowed: a session that forwards to 127.0.0.2


def test_unreachable_tcp_callback_is_a_clean_error(
        bus_factory: Factory, caplog: pytest.LogCaptureFixture) -> None:
    _, port = serve(bus_factory, "tcp")
    sock = open_socket(port)
    with caplog.at_level(logging.WARNING):
        error = interconnect("tcp", sock, f"tcp://127.0.0.1:{free_port()}")["error"]
    assert error["code"] == p.NOT_AVAILABLE
    # the node's own words, as over HTTP, never the text of the exception inside it
    assert error["data"].endswith(": nothing accepts a connection there"), error
    assert "Errno" not in error["data"] and "Connect call failed" not in error["data"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_no_callback_without_the_secret(bus_factory: Factory) -> None:
    # a node with a secret calls back only a peer that sent it: the interconnect of one
    # that did not is refused before any address is looked at
    bus, port = serve(bus_factory, "http", secret="s3cret")
    listener = socket.create_server(("127.0.0.1", 0))
    OPEN_SOCKETS.append(listener)
    sock = open_socket(port)
    addr = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for wrong in ({}, {"secret": "guess"}, {"secret": "\ud800"}):
        error = interconnect("http", sock, addr, **wrong)["error"]
        assert error["code"] == p.UNAUTHORISED, error
    assert not bus.transport("http").service.sessions  # type: ignore[attr-defined]


# -- 3. a deadline for a whole request -------------------------------------------------------


_HEAD = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(("scheme", "prefix", "dripped"), [
    ("tcp", b"", b'{"jsonrpc":"2.0","method":"connect_oneway","params":{},"id":1' + b" " * 200),
    ("http", b"", _HEAD + b"X-Pad: " + b"a" * 200),
    ("http", _HEAD + b"Content-Length: 300\r\n\r\n", b" " * 300),
], ids=["tcp-line", "http-head", "http-body"])
def test_a_slow_drip_is_closed_after_read_timeout(
        bus_factory: Factory, scheme: str, prefix: bytes, dripped: bytes) -> None:
    _, port = serve(bus_factory, scheme, read_timeout=1.0)
    sock = open_socket(port)
    if prefix:
        sock.sendall(prefix)
    # a byte every 0.1 s never waits read_timeout for one read: only a deadline for the
    # whole request closes it
    closed_after = drip(sock, dripped, 0.1, limit=8.0)
    assert closed_after is not None, "a 1-second read_timeout let a drip go on for 8 s"
    assert 0.9 <= closed_after < 5.0


# -- 4. smaller points ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_param_named_context_is_plain_invalid_params(bus_factory: Factory, scheme: str) -> None:
    _, port = serve(bus_factory, scheme)
    sock = open_socket(port)
    error = call(scheme, sock, request("connect_oneway", {"context": 1}))["error"]
    assert error == {"code": p.INVALID_PARAMS, "message": "Invalid params",
                     "data": "connect_oneway has no parameter 'context'"}


def test_host_header_of_posts_must_name_the_node(bus_factory: Factory) -> None:
    _, port = serve(bus_factory, "http", names=["berry.example"])
    ping = request("get_nowait", {"token": "x" * 43})
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "[::1]",
                 f"berry.example:{port}"):
        status, body = http_call(open_socket(port), ping, host)
        assert status == 200 and json.loads(body)["error"]["code"] == p.UNKNOWN_TOKEN, host
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.2"):
        status, body = http_call(open_socket(port), ping, host)
        assert status == 421 and b"Host" in body and b"names" in body, host


def test_errors_without_id_are_logged_once_per_burst(
        bus_factory: Factory, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the burst log is the process's: a burst of another test (a peer answering the node's
    # messages with an error without id) within its interval would hold back this first line
    monkeypatch.setattr(tcp_calls, "_odd_replies", BurstLog(tcp_calls.logger))
    _, port = serve(bus_factory, "tcp")
    sock = open_socket(port)
    line = json.dumps({"jsonrpc": "2.0", "error": {"code": 1, "message": "x"}, "id": None})
    with caplog.at_level(logging.WARNING, logger="berrymq.remote.tcp"):
        sock.sendall((line + "\n").encode() * 5000)
        # answered in order after them: all 5000 were read
        assert tcp_call(sock, request("get_nowait", {"token": "x" * 43}))["id"] == 1
    lines = [r for r in caplog.records if "without id" in r.getMessage()]
    assert 1 <= len(lines) <= 2, len(lines)


def test_a_refused_oversized_body_is_not_read_to_the_end(bus_factory: Factory) -> None:
    _, port = serve(bus_factory, "http")  # max_size 1 MiB
    sock = open_socket(port)
    size = 64 * 1024 * 1024
    sock.sendall(_HEAD + f"Content-Length: {size}\r\n\r\n".encode())
    sent = 0
    chunk = b" " * 65536
    try:
        while sent < size:
            sent += sock.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 16 * 1024 * 1024, f"the node read {sent} bytes of a refused body"


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_5000_connections_from_one_client_with_the_defaults(bus_factory: Factory,
                                                            scheme: str) -> None:
    bus, port = serve(bus_factory, scheme)
    ping = request("get_nowait", {"token": "x" * 43})
    socks = [open_socket(port) for _ in range(5000)]
    admission = bus.transport(scheme).admission  # type: ignore[attr-defined]
    # Every one admitted first: on a starved machine the kernel's accept queue can
    # overflow, and a connection whose handshake was dropped then waits for the kernel's
    # next SYN-ACK (1, 3, 7, 15 s...), longer than one call's 10 s; the node admits it then.
    wait_for(lambda: admission.open == 5000, timeout=60, what="5,000 connections admitted")
    for sock in socks:  # every one answered, while all are open
        assert call(scheme, sock, ping)["error"]["code"] == p.UNKNOWN_TOKEN
    assert admission.open == 5000 and admission.refused == {}


# -- open files: the operating system's cap under max_connections ------------------------------

def node_script(body: str, files: tuple[int, int] | None = None) -> str:
    """A node program for ``python -c``: the open-files limit set to ``files`` (soft, hard)
    if given, warnings logged to stderr, then ``body`` (``Bus``, ``PluginHost`` and
    ``Settings`` imported; ``os``, ``resource`` and ``sys`` too)."""
    limit = "" if files is None else f"resource.setrlimit(resource.RLIMIT_NOFILE, {files})\n"
    return ("import logging, os, resource, sys\n" + limit
            + 'logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: '
              '%(message)s")\n'
              "from berrymq.bus import Bus\n"
              "from berrymq.plugins import PluginHost\n"
              "from berrymq.settings import Settings\n" + body)


def start_script(script: str) -> subprocess.Popen[str]:
    """``python -c script`` with its standard streams piped, as text."""
    return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_OPEN_FILES_NODE = node_script("""
tables = {"jsonrpc-tcp": {"max_connections": int(sys.argv[1])}}
bus = Bus(name="files", plugins=PluginHost(Settings(tables=tables)))
bus.transport("tcp").listen("tcp://127.0.0.1:0")
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], flush=True)
bus.close()
""")


def open_files_node(max_connections: int, soft: int, hard: int) -> tuple[int, str]:
    """A node started with open-file limits (soft, hard) that listens with
    ``max_connections``: its soft limit once listening, and its log."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    done = subprocess.run([sys.executable, "-c", _OPEN_FILES_NODE, str(max_connections)],
                          capture_output=True, text=True, timeout=60, preexec_fn=limit,
                          check=True)
    return int(done.stdout.split()[-1]), done.stderr


def test_a_node_raises_its_open_files_limit_to_fit_max_connections() -> None:
    soft, log = open_files_node(500, soft=100, hard=4000)
    assert soft == 500 + 256
    assert "RLIMIT_NOFILE" not in log


def test_a_hard_open_files_limit_under_max_connections_is_named() -> None:
    soft, log = open_files_node(10_000, soft=100, hard=1000)
    assert soft == 1000  # as far as it may go
    assert "RLIMIT_NOFILE, hard limit 1000" in log, log
    assert "max_connections (10000 in all)" in log and "past 744 connections" in log, log


_TWO_TRANSPORTS_NODE = node_script("""
caps = {"max_connections": 600}
bus = Bus(name="files", plugins=PluginHost(Settings(
    tables={"jsonrpc-tcp": caps, "jsonrpc-http": caps})))
tcp = bus.transport("tcp").listen("tcp://127.0.0.1:0")
http = bus.transport("http").listen("http://127.0.0.1:0")
print(tcp.rsplit(":", 1)[1], http.rsplit(":", 1)[1], flush=True)
sys.stdin.readline()
bus.close()
""", files=(100, 1000))


def test_the_servers_of_a_process_refuse_connections_before_its_open_files_run_out() -> None:
    # 600 + 600 connections do not fit under 1000 files: past 1000 - 256 in all, the
    # node refuses the next connection itself, whichever transport (never EMFILE)
    node = start_script(_TWO_TRANSPORTS_NODE)
    socks: list[socket.socket] = []
    room = 1000 - 256
    try:
        assert node.stdout is not None
        tcp_port, http_port = map(int, node.stdout.readline().split())
        socks = [open_socket(tcp_port) for _ in range(600)]  # this transport's cap
        ping = request("get_nowait", {"token": "x" * 43})
        assert tcp_call(socks[-1], ping)["error"]["code"] == p.UNKNOWN_TOKEN  # all admitted
        socks += [open_socket(http_port) for _ in range(room - 600)]
        extra = open_socket(http_port)  # accepted after those (one listening socket, in order)
        socks.append(extra)
        answer = extra.makefile("rb").read()
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        refusal = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
        assert refusal["code"] == p.LIMIT_REACHED and refusal["data"]["limit"] == room
        assert "as many as its limit of open files allows (RLIMIT_NOFILE 1000" in (
            refusal["data"]["detail"])
    finally:
        for sock in socks:
            sock.close()
        _, log = node.communicate("\n", timeout=60)
    assert "out of system resource" not in log and "Too many open files" not in log, log
    assert "max_connections (1200 in all)" in log and f"past {room} connections" in log, log


_TWO_OVER_NODE = node_script("""
caps = {"max_connections": 10_000}
bus = Bus(name="files", plugins=PluginHost(Settings(
    tables={"jsonrpc-tcp": caps, "jsonrpc-http": caps})))
bus.transport("tcp").listen("tcp://127.0.0.1:0")
bus.transport("http").listen("http://127.0.0.1:0")
bus.close()
""", files=(100, 1000))


def test_the_shortfall_told_counts_every_server_started() -> None:
    """Each server over the limit alone: the second one's line names the caps of both."""
    done = subprocess.run([sys.executable, "-c", _TWO_OVER_NODE], capture_output=True,
                          text=True, timeout=60, check=True)
    assert "max_connections (10000 in all)" in done.stderr, done.stderr
    assert "max_connections (20000 in all)" in done.stderr, done.stderr
    assert done.stderr.count("RLIMIT_NOFILE, hard limit 1000") == 2, done.stderr


_SERVE_AGAIN_NODE = node_script("""
host = PluginHost(Settings(tables={"jsonrpc-tcp": {"max_connections": 600}}))
for _ in range(5):  # each bus serves on two addresses, then closes
    bus = Bus(name="again", plugins=host)
    bus.transport("tcp").listen("tcp://127.0.0.1:0")
    bus.transport("tcp").listen("tcp://127.0.0.1:0")
    bus.close()
print("done", flush=True)
""", files=(100, 1000))


def test_servers_that_closed_leave_no_claim_on_the_open_files() -> None:
    done = subprocess.run([sys.executable, "-c", _SERVE_AGAIN_NODE], capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "done"
    assert "RLIMIT_NOFILE" not in done.stderr, done.stderr  # 600 + 256 fit under 1000


_FILES_TAKEN_NODE = node_script("""
tables = {"jsonrpc-tcp": {"max_connections": 100}}  # fits: 100 + 256 files to spare
bus = Bus(name="files", plugins=PluginHost(Settings(tables=tables)))
url = bus.transport("tcp").listen("tcp://127.0.0.1:0")
held = []
try:
    while True:  # the program itself takes every file it may open
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
print(url.rsplit(":", 1)[1], flush=True)
sys.stdin.readline()
for fd in held:
    os.close(fd)
sys.stdin.readline()
bus.close()
""", files=(400, 400))


def test_accept_failing_for_want_of_files_is_one_warning_and_the_node_recovers() -> None:
    node = start_script(_FILES_TAKEN_NODE)
    assert node.stdin is not None and node.stdout is not None and node.stderr is not None
    socks: list[socket.socket] = []
    try:
        port = int(node.stdout.readline())
        # the kernel completes these connections; the node cannot accept() them
        socks = [open_socket(port) for _ in range(50)]
        first = node.stderr.readline()  # the node's first line about it, at once
        assert "a server could not accept connections" in first, first
        assert "Too many open files" in first and "ulimit -n" in first, first
        node.stdin.write("\n")  # the program gives its files back
        node.stdin.flush()
        ping = request("get_nowait", {"token": "x" * 43})
        for sock in socks:  # accepted once asyncio tries again (each second): served
            assert tcp_call(sock, ping)["error"]["code"] == p.UNKNOWN_TOKEN
    finally:
        for sock in socks:
            sock.close()
        _, rest = node.communicate("\n", timeout=60)
    assert "Traceback" not in rest, rest  # (asyncio's retries after the close are no error)
    later = [line for line in rest.splitlines() if "could not accept" in line]
    assert len(later) <= 1, rest  # at most the burst's closing line, with its count
    assert all("since the last line" in line for line in later), rest


def test_a_refused_connection_is_closed_when_its_answer_is_cancelled() -> None:
    """The I/O loop stopping (at exit, ``IOLoop.stop()``) cancels a refusal still writing
    its answer to a client that reads nothing: the socket was left open (asyncio 3.11
    closes no transport of a cancelled handler), and warned when collected."""

    async def main() -> bool:
        handlers: list[asyncio.Task[None]] = []
        writers: list[asyncio.StreamWriter] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.append(task)
            writers.append(writer)
            await Admission.turn_away(reader, writer, b"x" * (8 << 20))  # more than fits

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, client = await asyncio.open_connection("127.0.0.1", port)
        while not handlers:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the answer fills the socket's buffers: drain waits
        handlers[0].cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        closed = writers[0].transport.is_closing()
        client.close()
        server.close()
        await server.wait_closed()
        return closed

    assert asyncio.run(main())
