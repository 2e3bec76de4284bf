"""JSON-RPC 1.0 and the original berryMQ 0.3's dialect against real nodes (issue 11, point 3).

The peer here is written from the original's protocol with the standard library only, as
berryMQ 0.3 was: a 1.0 client (no ``jsonrpc`` member, positional params, ``"id": null``,
POSTed to ``/JSON`` as ``text/xml``) and a tiny 1.0 HTTP server that the node calls back.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from berrymq_jsonrpc import dialect
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.addresses import served_here
from berrymq_jsonrpc.status import metrics_text, status_snapshot
from helpers import send_body, serve

import berrymq
from berrymq.bus import Bus
from berrymq.message import Message
from berrymq.testing import free_port

TIMEOUT = 10.0


class V1Fault(Exception):
    """A 1.0 answer whose ``error`` is not null."""

    def __init__(self, error: Any) -> None:
        super().__init__(error)
        self.error = error


def v1_post(port: int, body: bytes, *, path: str = "/JSON",
            content_type: str | None = "text/xml") -> tuple[int, bytes]:
    """POST raw bytes as the original's client did (its content type by default)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request("POST", path, body, headers)
        if content_type is None:  # http.client adds none for bytes bodies: check it
            assert "content-type" not in {k.lower() for k in headers}
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class V1Client:
    """The original's ServerProxy, in short: every call is ``{"id": null, "method",
    "params": [...]}`` and the answer must hold both ``result`` and ``error``."""

    def __init__(self, scheme: str, port: int) -> None:
        self.scheme, self.port = scheme, port
        if scheme == "tcp":  # one connection: over TCP its sessions end with it
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        if self.scheme == "tcp":
            self.reader.close()
            self.sock.close()

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*params: Any) -> Any:
            body = json.dumps({"id": None, "method": method, "params": list(params)}).encode()
            if self.scheme == "http":
                status, data = v1_post(self.port, body)
                assert status == 200, (status, data)
            else:
                self.sock.sendall(body + b"\n")
                data = self.reader.readline()
            answer = json.loads(data)
            assert set(answer) == {"result", "error", "id"}, answer  # 1.0, no "jsonrpc"
            assert answer["id"] is None
            if answer["error"] is not None:
                assert answer["result"] is None
                raise V1Fault(answer["error"])
            return answer["result"]

        return call


class V1Peer:
    """A 1.0 peer's own server, as the original's ``init_connection`` ran it: it accepts
    ``send_message`` for the tokens it knows and records every request it got."""

    def __init__(self, answer: str = "ok", takes: float = 0.0) -> None:
        self.tokens: set[str] = set()
        self.requests: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.answer = answer
        #: set to answer at once: until then each call takes ``takes`` seconds to answer, as
        #: the original's server ran the program's receivers inside the call
        self.quick = threading.Event()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                peer.requests.put((self.path, request))
                peer.quick.wait(takes)
                method, params = request["method"], request["params"]
                if method == "send_message" and params[0] in peer.tokens:
                    result: Any = peer.answer
                else:
                    result = "invalid token"
                send_body(self, json.dumps({"result": result, "error": None,
                                            "id": request["id"]}).encode(), None)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self) -> tuple[str, dict[str, Any]]:
        return self.requests.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def peers() -> Iterator[Callable[..., V1Peer]]:
    made: list[V1Peer] = []

    def make(answer: str = "ok", takes: float = 0.0) -> V1Peer:
        made.append(V1Peer(answer, takes))
        return made[-1]

    yield make
    for peer in made:
        peer.quick.set()
        peer.close()


MakeV1 = Callable[[str, int], V1Client]


@pytest.fixture
def v1() -> Iterator[MakeV1]:
    made: list[V1Client] = []

    def make(scheme: str, port: int) -> V1Client:
        made.append(V1Client(scheme, port))
        return made[-1]

    yield make
    for client in made:
        client.close()


def inbox(bus: Bus, pattern: str) -> queue.Queue[Message]:
    got: queue.Queue[Message] = queue.Queue()
    bus.subscribe(pattern, got.put, weak=False)
    return got


# -- the three styles, from a 1.0 peer --------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "tcp"])
def test_style02_oneway(v1: MakeV1, bus_factory: Callable[..., Bus],
                        scheme: str) -> None:
    bus, port = serve(bus_factory, scheme)
    got = inbox(bus, "style02c:*")
    client = v1(scheme, port)
    token = client.connect_oneway(1000)
    assert client.send_message(token, "style02c:test02", [1, 2, 3], {"a": 1, "b": 2}) == "ok"
    message = got.get(timeout=TIMEOUT)
    assert (message.id, message.args, message.kwargs) == (
        "style02c:test02", (1, 2, 3), {"a": 1, "b": 2})
    assert client.close_connection(token) == "ok"
    with pytest.raises(V1Fault) as fault:
        client.send_message(token, "style02c:late", [], {})
    assert fault.value.error["code"] == p.UNKNOWN_TOKEN


@pytest.mark.parametrize("scheme", ["http", "tcp"])
def test_style03_queue(v1: MakeV1, bus_factory: Callable[..., Bus],
                       scheme: str) -> None:
    bus, port = serve(bus_factory, scheme)
    got = inbox(bus, "style03c:*")
    client = v1(scheme, port)
    token = client.connect_via_queue("style03s:*", 1000)
    assert client.send_message(token, "style03c:test01", [3, 2, 1], {"a": 1}) == "ok"
    assert got.get(timeout=TIMEOUT).args == (3, 2, 1)
    bus.twitter("style03s:test02", 7, k="v")
    assert client.get(token, True, 10000) == ["style03s:test02", [7], {"k": "v"}]
    bus.twitter("style03s:test03")
    assert client.get_nowait(token) == ["style03s:test03", [], {}]
    with pytest.raises(V1Fault) as fault:
        client.get_nowait(token)
    assert fault.value.error["code"] == p.EMPTY
    assert client.close_connection(token, None) == "ok"  # the original's (token, addr)


@pytest.mark.parametrize("scheme", ["http", "tcp"])
def test_a_blocking_get_waits_beside_the_deliveries_of_the_node(
        v1: MakeV1, bus_factory: Callable[..., Bus], scheme: str,
        wait_for: Callable[..., Any]) -> None:
    """The original's client waiting in ``get`` (as 0.3's ``berrymq.get()`` does) holds
    up nobody: a message sent meanwhile over JSON-RPC 2.0 is acknowledged, delivered and
    handed to that ``get`` at once. (It once waited on the delivery lane, so every
    message to the node waited for the get's timeout.)"""
    bus, port = serve(bus_factory, scheme)
    waiting = v1(scheme, port)
    token = waiting.connect_via_queue("task:*", 1000)
    answered: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=lambda: answered.put(waiting.get(token, True, 30)),
                     daemon=True).start()
    session = bus.transport(scheme).service.sessions[token]  # type: ignore[attr-defined]
    # the get is waiting once it keeps the session open for its 30 s beyond the ttl
    wait_for(lambda: session.deadline - time.monotonic() > 1000 + 20, TIMEOUT,
             "the get to wait at the node")
    sender = bus_factory()
    link = sender.transport(scheme).connect_oneway(f"{scheme}://127.0.0.1:{port}", 60)
    link.send(Message("task:run", (2,)))
    assert link.flush(TIMEOUT)  # acknowledged: the lane is free
    assert answered.get(timeout=TIMEOUT) == ["task:run", [2], {}]
    link.close()


@pytest.mark.parametrize("scheme", ["http", "tcp"])
def test_style01_interconnect_both_ways(v1: MakeV1, bus_factory: Callable[..., Bus],
                                        scheme: str,
                                        peers: Callable[..., V1Peer]) -> None:
    bus, port = serve(bus_factory, scheme)
    got = inbox(bus, "style01c:*")
    peer = peers()
    token = str(uuid.uuid1())  # the client proposes the token, as the original did
    peer.tokens.add(token)
    client = v1(scheme, port)
    assert client.interconnect(["127.0.0.1", peer.port], token, 1000) == token
    # peer -> node, with the proposed token
    assert client.send_message(token, "style01c:test01", [], {}) == "ok"
    assert got.get(timeout=TIMEOUT).id == "style01c:test01"
    # node -> peer: send_message in 1.0 form, one message per request, the peer's token,
    # at /JSON; the peer's own message did not come back to it
    for n in range(3):
        bus.twitter("style01s:test02", n, x=n)
    for n in range(3):
        path, request = peer.next()
        assert path == "/JSON"
        assert "jsonrpc" not in request and request["id"] is not None
        assert request["method"] == "send_message"
        assert request["params"] == [token, "style01s:test02", [n], {"x": n}]
    assert bus.transport(scheme).flush(TIMEOUT)
    assert peer.requests.empty()
    # the node's status shows the session: the connection it came on (TCP), or where its
    # peer is called back (HTTP, where requests come on no connection of their own)
    [session] = [s for s in status_snapshot(bus)["sessions"] if s["style"] == "interconnect"]
    assert session["peer"] == (f"http://127.0.0.1:{peer.port}/JSON" if scheme == "http"
                               else f"tcp://127.0.0.1:{client.sock.getsockname()[1]}")
    assert 'style="interconnect"' in metrics_text(status_snapshot(bus))
    # what went to the peer is counted as for a 2.0 peer (the message went out once)
    out = [m for m in status_snapshot(bus)["recent"] if m["direction"] == "out"]
    assert [m["identifier"] for m in out] == ["style01s:test02"] * 3
    # a second interconnect with a token in use is refused
    with pytest.raises(V1Fault) as fault:
        client.interconnect(["127.0.0.1", peer.port], token, 1000)
    assert fault.value.error["code"] == p.INVALID_PARAMS
    assert "already names an open session" in fault.value.error["data"]
    # closing stops the forwarding; the token, which the node took, is then unknown (not
    # malformed: it is the peer's kind of token)
    assert client.close_connection(token) == "ok"
    assert token not in bus.transport(scheme).service.sessions
    with pytest.raises(V1Fault) as fault:
        client.send_message(token, "style01c:late", [], {})
    assert fault.value.error["code"] == p.UNKNOWN_TOKEN


def test_interconnect_at_a_url_is_called_back_at_its_path(v1: MakeV1,
        bus_factory: Callable[..., Bus], peers: Callable[..., V1Peer]) -> None:
    bus, port = serve(bus_factory, "http")
    peer = peers()
    token = str(uuid.uuid4())
    peer.tokens.add(token)
    client = v1("http", port)
    assert client.interconnect(f"http://localhost:{peer.port}", token, None) == token
    bus.twitter("node:hello")
    path, request = peer.next()
    assert path == "/" and request["params"][:2] == [token, "node:hello"]


def test_a_peer_that_refuses_the_token_closes_the_session(v1: MakeV1,
        bus_factory: Callable[..., Bus], peers: Callable[..., V1Peer],
        wait_for: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    bus, port = serve(bus_factory, "http")
    peer = peers(answer="timeout")  # what 0.3 answers for an expired connection
    token = str(uuid.uuid4())
    peer.tokens.add(token)
    v1("http", port).interconnect(["127.0.0.1", peer.port], token, 1000)
    service = bus.transport("http").service
    bus.twitter("node:hello")
    wait_for(lambda: token not in service.sessions, TIMEOUT, "the session to close")
    assert "answered send_message with 'timeout'" in caplog.text
    assert "could not forward 1 message(s)" in caplog.text
    # the session's end says why (it said "peer unreachable" for a peer that answered)
    wait_for(lambda: "ended (sending to the peer failed: " in caplog.text, TIMEOUT,
             "the session's end logged")
    assert "peer unreachable" not in caplog.text
    # counted as lost on the node, and its flush says so (once)
    wait_for(lambda: service.stats.losses().get("not sent: connection failed or closed") == 1,
             TIMEOUT, "the loss counted")
    assert bus.flush(TIMEOUT) is False
    assert bus.flush(TIMEOUT) is True


@pytest.mark.parametrize(("timeout", "kept"), [(5.0, True), (0.3, False)])
def test_a_slow_peer_keeps_its_interconnect_within_the_timeout_setting(
        v1: MakeV1, bus_factory: Callable[..., Bus], peers: Callable[..., V1Peer],
        wait_for: Callable[..., Any], timeout: float, kept: bool) -> None:
    """The original's server runs its program's receivers inside each call-back: a peer
    may take a while to answer. The node waits the transport's ``timeout`` setting for it
    (it waited a fixed 10 s, which no setting changed), then closes the session."""
    bus, port = serve(bus_factory, "http", timeout=timeout)
    peer = peers(takes=1.0)  # each call-back answered after a second
    token = str(uuid.uuid4())
    peer.tokens.add(token)
    v1("http", port).interconnect(["127.0.0.1", peer.port], token, 1000)
    service = bus.transport("http").service
    bus.twitter("node:slow")
    assert peer.next()[1]["params"][1] == "node:slow"
    if kept:
        assert bus.transport("http").flush(TIMEOUT)  # answered "ok" after its second
        assert token in service.sessions
    else:
        wait_for(lambda: token not in service.sessions, TIMEOUT, "the session to close")


@pytest.mark.parametrize(("addr", "token", "problem"), [
    (["example.com", 80], "a" * 36, "not a loopback address"),
    (["127.0.0.1", 0], "a" * 36, "invalid port"),
    ("tcp://127.0.0.1:9", "a" * 36, "http://host:port"),
    (None, "a" * 36, "[host, port]"),
    (["127.0.0.1", 9], "short", "printable ASCII"),
    (["127.0.0.1", 9], "has a space in it somewhere", "printable ASCII"),
    # the path became the session's peer, shown by /status and berrymq status: a lone
    # surrogate made every status request fail, an escape code reached the terminal
    ("http://127.0.0.1:9/\ud800", "a" * 36, "no URL path"),
    ("http://127.0.0.1:9/\u001b]0;title\u0007", "a" * 36, "no URL path"),
    ("http://127.0.0.1:9/" + "a" * 1024, "a" * 36, "at most 1024 printable ASCII"),
    ("http://user:pw@127.0.0.1:9/x", "a" * 36, "without credentials"),
    ("http://127.0.0.1:9/x?y=1", "a" * 36, "query"),
])
def test_interconnect_refusals(v1: MakeV1, bus_factory: Callable[..., Bus],
                               addr: Any, token: str,
                               problem: str) -> None:
    _, port = serve(bus_factory, "http")
    with pytest.raises(V1Fault) as fault:
        v1("http", port).interconnect(addr, token, 1000)
    assert fault.value.error["code"] == p.INVALID_PARAMS
    assert problem in fault.value.error["data"]


def test_interconnect_over_max_ttl_is_refused_before_the_peer_is_called(
        v1: MakeV1, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, "http", max_ttl=100)
    with pytest.raises(V1Fault) as fault:  # nothing listens there: it is never called
        v1("http", port).interconnect(["127.0.0.1", free_port()], str(uuid.uuid4()), 1e308)
    assert fault.value.error["code"] == p.LIMIT_REACHED
    assert fault.value.error["data"]["setting"] == "max_ttl"
    assert not bus.transport("http").service.sessions  # type: ignore[attr-defined]


def test_interconnect_to_an_address_where_nothing_listens_opens_no_session(
        v1: MakeV1, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, "http")
    dead = free_port()
    with pytest.raises(V1Fault) as fault:
        v1("http", port).interconnect(["127.0.0.1", dead], str(uuid.uuid4()), 1000)
    assert fault.value.error["code"] == p.NOT_AVAILABLE
    assert fault.value.error["data"] == (f"cannot call back http://127.0.0.1:{dead}/JSON: "
                                         "nothing accepts a connection there")
    assert not bus.transport("http").service.sessions  # type: ignore[attr-defined]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_interconnect_to_the_nodes_own_server_is_refused(
        v1: MakeV1, bus_factory: Callable[..., Bus], host: str) -> None:
    """1.0 messages carry no uid: two such sessions calling the node itself back would
    send one message round for ever (seen: 700 to 1,500 a second, never ending)."""
    bus, port = serve(bus_factory, "http")
    for addr in ([host, port], f"http://{host}:{port}/JSON"):
        with pytest.raises(V1Fault) as fault:
            v1("http", port).interconnect(addr, str(uuid.uuid4()), 1000)
        assert fault.value.error["code"] == p.INVALID_PARAMS
        assert "is this node's own server" in fault.value.error["data"]
    assert not bus.transport("http").service.sessions  # type: ignore[attr-defined]
    bus.transport("http").close()  # its address is no longer this process's own
    assert not served_here(port)


@pytest.mark.parametrize("form", ["[token, identifier]", "[token, identifier, args]",
                                  "[token, identifier, args, kwargs]", "by name",
                                  "a null uid by name", "a null uid by position",
                                  "a null uid and hops by name"])
def test_a_v1_message_carrying_its_uid_comes_once_whatever_its_params(
        bus_factory: Callable[..., Bus], form: str) -> None:
    """The uid a berryMQ node carries beside a 1.0 send_message ("berrymq": {uid, hops})
    was read only with four positional params: a message coming round a circle of 1.0
    interconnects in another form was delivered again each time."""
    bus, port = serve(bus_factory, "tcp")
    got = inbox(bus, "carried:*")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        lines = sock.makefile("rb")

        def call(request: dict[str, Any]) -> Any:
            sock.sendall(json.dumps(request).encode() + b"\n")
            return json.loads(lines.readline())

        token = call({"method": "connect_oneway", "params": [60], "id": 1})["result"]
        params: Any = {"[token, identifier]": [token, "carried:x"],
                       "[token, identifier, args]": [token, "carried:x", [1]],
                       "[token, identifier, args, kwargs]": [token, "carried:x", [1], {}],
                       "by name": {"token": token, "identifier": "carried:x", "args": [1]},
                       "a null uid by name": {"token": token, "identifier": "carried:x",
                                              "uid": None},
                       "a null uid by position": [token, "carried:x", [], {}, None, 3],
                       "a null uid and hops by name": {"token": token, "identifier": "carried:x",
                                                       "uid": None, "hops": None},
                       }[form]
        for _ in range(2):  # the same message, come round again
            answer = call({"method": "send_message", "params": params, "id": 2,
                           "berrymq": {"uid": "U" + "7" * 19, "hops": 1}})
            assert answer["error"] is None, answer
        call({"method": "send_message", "params": [token, "carried:end"], "id": 3})
    assert got.get(timeout=TIMEOUT).id == "carried:x"
    assert got.get(timeout=TIMEOUT).id == "carried:end"


# -- raw requests, as curl would send them --------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "application/json-rpc",
    "application/jsonrequest", "text/xml", None,
])
@pytest.mark.parametrize("path", ["/JSON", "/", "/jsonrpc"])
def test_raw_v1_requests(bus_factory: Callable[..., Bus], content_type: str | None,
                         path: str) -> None:
    _, port = serve(bus_factory, "http")
    body = b'{"method": "connect_oneway", "params": [60], "id": 3}'
    status, data = v1_post(port, body, path=path, content_type=content_type)
    assert status == 200
    answer = json.loads(data)
    assert set(answer) == {"result", "error", "id"}
    assert answer["error"] is None and answer["id"] == 3 and isinstance(answer["result"], str)


def test_v2_without_content_type_like_tinyrpc(bus_factory: Callable[..., Bus]) -> None:
    _, port = serve(bus_factory, "http")
    body = b'{"jsonrpc": "2.0", "method": "connect_oneway", "id": 1}'
    status, data = v1_post(port, body, path="/", content_type=None)
    assert status == 200 and json.loads(data)["jsonrpc"] == "2.0"


@pytest.mark.parametrize(("path", "content_type", "status"), [
    ("/elsewhere", "application/json", 404), ("/JSON", "text/plain", 415),
])
def test_other_paths_and_media_types_are_refused(bus_factory: Callable[..., Bus], path: str,
                                                 content_type: str, status: int) -> None:
    _, port = serve(bus_factory, "http")
    got, data = v1_post(port, b'{"method": "connect_oneway", "params": [], "id": 1}',
                        path=path, content_type=content_type)
    assert got == status
    assert (b"/JSON" in data) if status == 404 else (b"application/json-rpc" in data)


@pytest.mark.parametrize(("request_", "code", "answer_id"), [
    ({"method": "no_such_method", "params": [], "id": 7}, p.METHOD_NOT_FOUND, 7),
    ({"method": "send_message", "params": [5, "a:b", [], {}], "id": 7}, p.INVALID_PARAMS, 7),
    ({"method": "get_nowait", "params": ["t", "u"], "id": 7}, p.INVALID_PARAMS, 7),
    ({"method": "send_message", "params": ["x" * 43, "a:b", [], {}], "id": "s"},
     p.UNKNOWN_TOKEN, "s"),
    ({"method": 5, "params": [], "id": 7}, p.INVALID_REQUEST, None),
    ({"method": "connect_oneway", "params": [], "id": 7, "extra": 1}, p.INVALID_REQUEST, None),
])
@pytest.mark.parametrize("scheme", ["http", "tcp"])
def test_v1_errors(bus_factory: Callable[..., Bus], scheme: str, request_: dict[str, Any],
                   code: int, answer_id: Any) -> None:
    _, port = serve(bus_factory, scheme)
    body = json.dumps(request_).encode()
    if scheme == "http":
        status, data = v1_post(port, body)
        assert status == 200
    else:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(body + b"\n")
            with sock.makefile("rb") as reader:
                data = reader.readline()
    answer = json.loads(data)
    assert set(answer) == {"result", "error", "id"}, answer
    assert answer["result"] is None and answer["id"] == answer_id
    assert answer["error"]["code"] == code
    if "extra" in request_:  # named in 1.0's terms, without 2.0's jsonrpc member
        assert answer["error"]["data"] == ("a JSON-RPC 1.0 request has no members but method, "
                                           "params, id and berrymq (what a berryMQ node "
                                           "carries)")


def test_a_node_that_needs_a_secret_refuses_v1(v1: MakeV1, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, "http", secret="s3cret")
    with pytest.raises(V1Fault) as fault:
        v1("http", port).connect_oneway(1000)
    assert fault.value.error["code"] == p.UNAUTHORISED
    assert "JSON-RPC 1.0 requests carry no secret" in fault.value.error["data"]
    body = b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"secret":"s3cret"},"id":1}'
    status, data = v1_post(port, body, content_type="application/json")
    assert status == 200 and isinstance(json.loads(data)["result"], str)
    # a blocking get too, which waits on the loop: a secret among its params is no way in
    body = (b'{"jsonrpc":"2.0","method":"connect_via_queue","params":{"identifier":"j:*",'
            b'"secret":"s3cret"},"id":2}')
    token = json.loads(v1_post(port, body, content_type="application/json")[1])["result"]
    bus.twitter("j:x", 1)
    get = {"method": "get", "params": {"token": token, "secret": "s3cret", "timeout": 1}, "id": 3}
    status, data = v1_post(port, json.dumps(get).encode(), content_type="application/json")
    assert json.loads(data)["error"]["code"] == p.UNAUTHORISED, data


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_node_that_needs_a_secret_does_not_answer_a_v1_notification(
        bus_factory: Callable[..., Bus], scheme: str) -> None:
    # It was answered Unauthorised, with "id": null: a stray line that a pipelining 1.0
    # client (whose every call has "id": null) takes for the answer to its next call.
    bus, port = serve(bus_factory, scheme, secret="s3cret")
    received = berrymq.Queue("a:*", bus=bus)
    notification = b'{"method": "send_message", "params": ["x", "a:b", [], {}]}'
    call = b'{"method": "connect_oneway", "params": [], "id": 7}'
    if scheme == "http":
        assert v1_post(port, notification) == (204, b"")
        answer = json.loads(v1_post(port, call)[1])
    else:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock, \
                sock.makefile("rb") as reader:
            sock.sendall(notification + b"\n" + call + b"\n")
            answer = json.loads(reader.readline())  # the call's, not the notification's
    assert answer["id"] == 7 and answer["error"]["code"] == p.UNAUTHORISED, answer
    assert received.qsize() == 0  # nor run: the node read it before the call it answered


@pytest.mark.parametrize("member", [
    b'{"method": "connect_oneway", "params": [], "id": 1}',
    # a 1.0 call that may wait is no exception: it is not run (its receiver never is)
    b'{"method": "ask", "params": {"identifier": "never:run", "timeout": 1}, "id": 1}',
    b'{"method": "get", "params": ["' + b"A" * 43 + b'", true, 1], "id": 1}',
])
def test_a_v1_member_of_a_batch_is_an_invalid_request(bus_factory: Callable[..., Bus],
                                                      member: bytes) -> None:
    bus, port = serve(bus_factory, "http")
    ran: list[object] = []
    bus.subscribe("never:run", ran.append, weak=False)
    _, data = v1_post(port, b"[" + member + b"]")
    assert json.loads(data) == [{"jsonrpc": "2.0", "id": None, "error": {
        "code": p.INVALID_REQUEST, "message": "Invalid Request",
        "data": "the jsonrpc member must be the string 2.0, or be absent in a JSON-RPC 1.0 "
                "request (which a batch cannot hold)"}}]
    assert ran == []


def test_v1_calls_that_may_wait_keep_the_1_0_form_and_the_order_of_their_connection(
        v1: MakeV1, bus_factory: Callable[..., Bus]) -> None:
    """Refused over max_waiting: in 1.0's form. A non-blocking get after the same
    connection's send_message (whose receivers are slow) sees what that message stored."""
    bus, port = serve(bus_factory, "tcp", max_waiting=1)
    bus.subscribe("task:*", lambda message: time.sleep(0.2), weak=False)  # before the queue
    client = v1("tcp", port)
    token = client.connect_via_queue("task:*", 1000)
    release = threading.Event()
    bus.subscribe("hold:on", lambda message: release.wait(TIMEOUT), weak=False)
    try:
        client.sock.sendall(b'{"method": "ask", "params": {"identifier": "hold:on", "timeout": 10}'
                            b', "id": 1}\n{"method": "ask", "params": {"identifier": "hold:on"}'
                            b', "id": 2}\n')
        refused = json.loads(client.reader.readline())
        assert refused["id"] == 2 and "jsonrpc" not in refused and refused["result"] is None
        assert refused["error"]["code"] == p.LIMIT_REACHED
    finally:
        release.set()
    assert json.loads(client.reader.readline())["id"] == 1
    sender = client.connect_oneway(1000)
    client.sock.sendall(json.dumps({"method": "send_message", "params": [
        sender, "task:x", [1], {}], "id": 3}).encode() + b"\n" + json.dumps(
        {"method": "get", "params": [token, False, None], "id": 4}).encode() + b"\n")
    sent, got = (json.loads(client.reader.readline()) for _ in range(2))
    assert (sent["id"], sent["result"]) == (3, "ok")
    assert (got["id"], got["result"]) == (4, ["task:x", [1], {}])


# -- the pure parts -----------------------------------------------------------------------------


def test_to_v2_reads_the_originals_positional_params() -> None:
    assert dialect.to_v2({"method": "connect_oneway", "params": [None], "id": None}) == {
        "jsonrpc": "2.0", "method": "connect_oneway", "params": [], "id": None}
    assert dialect.to_v2({"method": "close_connection", "params": ["t", ["h", 1]]})[
        "params"] == ["t"]
    assert dialect.to_v2({"method": "get", "params": ["t", True, None], "id": 1})[
        "params"] == ["t", True]
    assert "id" not in dialect.to_v2({"method": "x"})


def test_to_v2_omits_a_null_optional_member_by_name() -> None:
    """As trailing nulls by position: a 1.0 send_message's ``"hops": null`` (or ``"args":
    null``) by name was kept and refused as Invalid params."""
    params = {"token": "t", "identifier": "a:b", "uid": None, "hops": None, "args": None,
              "kwargs": None}
    assert dialect.to_v2({"method": "send_message", "params": params, "id": 1})["params"] == {
        "token": "t", "identifier": "a:b"}
    carried = {"uid": "U1", "hops": 2}
    assert dialect.to_v2({"method": "send_message", "params": params, "id": 1,
                          "berrymq": carried})["params"] == {
        "token": "t", "identifier": "a:b", "uid": "U1", "hops": 2}


@pytest.mark.parametrize(("header", "accepted"), [
    (None, True), ("", True), ("Application/JSON-RPC", True), ("text/xml; charset=utf-8", True),
    ("text/plain", False), ("application/xml", False),
])
def test_accepts_media_type(header: str | None, accepted: bool) -> None:
    assert dialect.accepts_media_type(header) is accepted


def test_a_web_page_cannot_post_without_a_content_type(bus_factory: Callable[..., Bus]) -> None:
    # fetch(url, {method: "POST", body: new Blob([...])}) sends no Content-Type and no
    # preflight; browsers add Origin, JSON-RPC clients do not
    _, port = serve(bus_factory, "http")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/", b'{"method": "connect_oneway", "params": [], "id": 1}',
                     {"Origin": "http://evil.example"})
        response = conn.getresponse()
        assert response.status == 415 and b"not a web page" in response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("request_id", [[1, 2], {"a": 1}, True])
def test_a_v1_id_of_any_type_is_answered_with_it(bus_factory: Callable[..., Bus],
                                                 request_id: Any) -> None:
    # JSON-RPC 1.0 allows an id of any type (and dialects.md says it is kept as sent):
    # these were Invalid Request with "id": null, 2.0's rule
    _, port = serve(bus_factory, "http")
    status, data = v1_post(port, json.dumps({"method": "connect_oneway", "params": [60],
                                             "id": request_id}).encode())
    answer = json.loads(data)
    assert status == 200 and answer["error"] is None and answer["result"], answer
    assert answer["id"] == request_id


def test_a_v1_interconnect_by_name_ignores_a_secret_as_every_1_0_method_does(
        v1: MakeV1, bus_factory: Callable[..., Bus], peers: Callable[..., V1Peer]) -> None:
    _, port = serve(bus_factory, "http")
    peer = peers()
    token = str(uuid.uuid4())
    body = json.dumps({"method": "interconnect", "id": 1, "params": {
        "addr": ["127.0.0.1", peer.port], "token": token, "ttl": 60, "secret": "x"}})
    status, data = v1_post(port, body.encode())
    assert status == 200 and json.loads(data)["result"] == token, data


def test_callback_address() -> None:
    assert dialect.callback_address(["localhost", 8000]) == ("localhost", 8000, "/JSON")
    assert dialect.callback_address("http://[::1]:8000/rpc") == ("::1", 8000, "/rpc")
