"""Protocol edges that clients not written here hit (issue 9 point 5), on real servers:
a TCP request followed by a half-close, a session token used from other connections
(clients that open a connection per call), ``ask`` over every connection style; and
clients that are not Python at all (a few lines of Node.js, ``curl``)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.sessions import WAIT_THREADS
from helpers import required_program
from probe_tools import TOKEN, Raw, http_post, post_body, request, request_text, send_request

import berrymq
from berrymq.bus import Bus

SCHEMES = ["tcp", "http"]
WAIT = 10.0


def half_closed(port: int, data: bytes) -> list[dict[str, Any]]:
    """Send ``data`` over a fresh TCP connection, half-close it (``shutdown(SHUT_WR)``, as
    ``printf ... | socat`` does) and read every answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return [json.loads(line) for line in b"".join(chunks).splitlines()]


def one_call(scheme: str, port: int, method: str, params: dict[str, Any] | list[Any]) -> Any:
    """One request on a connection of its own, closed after the answer (as jayson's TCP
    client and curl do)."""
    body = request_text(method, params)
    if scheme == "tcp":
        [reply] = half_closed(port, body + b"\n")
    else:
        reply = post_body(port, body)
    assert "error" not in reply, reply
    return reply["result"]


#: A blocking ``get`` as a client may write it: by name, by position, or in a batch.
GET_FORMS: dict[str, Callable[[str, float], bytes]] = {
    "by-name": lambda token, timeout: request_text("get", {"token": token, "timeout": timeout}),
    "by-position": lambda token, timeout: request_text("get", [token, True, timeout]),
    "in-a-batch": lambda token, timeout: (  # beside a request that does not wait
        b"[" + request_text("get", {"token": token, "timeout": timeout}) + b","
        + request_text("network", {}, id=2) + b"]"),
    "json-rpc-1.0": lambda token, timeout: json.dumps(  # the original's clients: no "jsonrpc"
        {"method": "get", "params": [token, True, timeout], "id": 1}).encode(),
}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("form", list(GET_FORMS))
def test_a_client_gone_while_its_blocking_get_waits_leaves_the_next_message_queued(
        scheme: str, form: str, server: Callable[[str], tuple[Bus, int]],
        wait_for: Callable[..., Any]) -> None:
    bus, port = server(scheme)
    token = one_call(scheme, port, "connect_via_queue", {"identifier": "cm:*"})
    admission = bus.transport(scheme).admission  # type: ignore[attr-defined]
    body = GET_FORMS[form](token, 6 * WAIT)  # longer than the test
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        send_request(sock, scheme, body)
        wait_for(lambda: admission.open == 1, WAIT, "the get to be waiting")
    # the client gave up (curl -m 1, a killed program): the node ends the wait and closes
    wait_for(lambda: admission.open == 0, WAIT, "the node to end the wait")
    bus.twitter("cm:done", 1)
    assert one_call(scheme, port, "get_nowait", {"token": token}) == ["cm:done", [1], {}]


def test_a_blocking_get_half_closed_on_an_empty_queue_is_answered_empty_at_once(
        server: Callable[[str], tuple[Bus, int]]) -> None:
    bus, port = server("tcp")
    token = one_call("tcp", port, "connect_via_queue", {"identifier": "hc:*"})
    bus.twitter("hc:first", 1)
    started = time.monotonic()
    first, second = half_closed(port, request_text("get", {"token": token, "timeout": WAIT}, 1)
                                + b"\n" + request_text("get", {"token": token, "timeout": WAIT}, 2)
                                + b"\n")
    assert time.monotonic() - started < WAIT / 2
    assert first["result"] == ["hc:first", [1], {}]  # queued when asked for: its answer
    assert second["error"]["code"] == p.EMPTY  # nothing more: no wait for a client gone


@pytest.mark.parametrize("scheme", SCHEMES)
def test_interconnect_takes_the_original_host_port_pair_as_its_address(
        scheme: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    bus, port = server(scheme)
    peer, peer_port = server(scheme)
    got = berrymq.Queue("news:*", bus=peer)
    peer_token = one_call(scheme, peer_port, "connect_oneway", {})  # the peer's own session
    # by name, and by position as the original's clients send it
    for params in ({"addr": ["127.0.0.1", peer_port], "token": peer_token},
                   [["127.0.0.1", peer_port], peer_token, 60]):
        assert TOKEN.fullmatch(one_call(scheme, port, "interconnect", params))
    bus.twitter("news:flash", 1)
    assert got.get(timeout=WAIT).args == (1,)
    body = request_text("interconnect", {"addr": ["127.0.0.1"], "token": peer_token})
    bad = post_body(port, body) if scheme == "http" else half_closed(port, body + b"\n")[0]
    assert bad["error"]["code"] == p.INVALID_PARAMS
    assert "[host, port]" in bad["error"]["data"]


def test_a_half_closed_tcp_request_is_answered_before_the_close(
        server: Callable[[str], tuple[Bus, int]]) -> None:
    bus, port = server("tcp")
    received = berrymq.Queue("half:*", bus=bus)
    for round_ in range(40):
        [reply] = half_closed(port, request_text("connect_oneway", {}, id=round_) + b"\n")
        assert reply["id"] == round_ and isinstance(reply["result"], str)
    # several requests, the last one without its newline: all answered, in order
    token = one_call("tcp", port, "connect_oneway", {})
    lines = [request_text("send_message", {"token": token, "identifier": "half:x", "args": [i]},
                     id=i) for i in range(5)]
    replies = half_closed(port, b"\n".join(lines))
    assert [r["id"] for r in replies] == list(range(5))
    assert [received.get(timeout=WAIT).args[0] for _ in range(5)] == list(range(5))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_token_works_from_any_connection_of_its_transport(
        scheme: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    bus, port = server(scheme)
    received = berrymq.Queue("percall:*", bus=bus)
    # style 02 with a connection per call
    token = one_call(scheme, port, "connect_oneway", {"ttl": 60})
    assert one_call(scheme, port, "send_message",
                    {"token": token, "identifier": "percall:one", "args": [1]}) == "ok"
    assert received.get(timeout=WAIT).args == (1,)
    # style 03 with a connection per call
    queue_token = one_call(scheme, port, "connect_via_queue", {"identifier": "news:*"})
    bus.twitter("news:today", "sunny")
    assert one_call(scheme, port, "get", {"token": queue_token, "timeout": WAIT}) == [
        "news:today", ["sunny"], {}]
    assert one_call(scheme, port, "close_connection", {"token": queue_token}) == "ok"
    assert one_call(scheme, port, "close_connection", {"token": token}) == "ok"
    assert not bus.transport(scheme).service.sessions  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("by_position", [False, True], ids=["by-name", "by-position"])
def test_a_blocking_get_keeps_its_session_open_past_the_ttl(
        scheme: str, by_position: bool, server: Callable[[str], tuple[Bus, int]],
        wait_for: Callable[..., Any]) -> None:
    bus, port = server(scheme)
    sessions = bus.transport(scheme).service.sessions  # type: ignore[attr-defined]
    token = one_call(scheme, port, "connect_via_queue", {"identifier": "late:*", "ttl": 0.3})
    # a get that waits 1.2 s, four times the ttl: the session is in use all along
    params: Any = [token, True, 1.2] if by_position else {"token": token, "timeout": 1.2}
    body = json.dumps({"jsonrpc": "2.0", "method": "get", "params": params, "id": 1}).encode()
    if scheme == "tcp":
        [reply] = half_closed(port, body + b"\n")
    else:
        reply = post_body(port, body)
    assert reply["error"]["code"] == p.EMPTY, reply  # not -32001: it did not expire
    assert token in sessions
    # ttl seconds after that last request, it expires
    wait_for(lambda: token not in sessions, WAIT, "the session to expire after the get")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("style", ["oneway", "queue", "interconnect"])
def test_ask_over_every_connection_style(
        scheme: str, style: str, server: Callable[[str], tuple[Bus, int]],
        bus_factory: Callable[..., Bus]) -> None:
    node, port = server(scheme)
    node.subscribe("price:quote", lambda message: 9.5 * message.args[0], weak=False)
    client = bus_factory()
    transport = client.transport(scheme)
    address = f"{scheme}://127.0.0.1:{port}"
    if style == "oneway":
        connection = transport.connect_oneway(address, 60)
    elif style == "queue":
        connection = transport.connect_via_queue(address, berrymq.Identifier("q:*"), 60)
    else:
        if scheme == "http":
            transport.listen("http://127.0.0.1:0")
        connection = transport.interconnect(address, 60)
    assert client.ask("price:quote", 2, timeout=WAIT) == [19.0]
    connection.close()
    assert client.ask("price:quote", 2, timeout=WAIT) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_messages_answered_ok_are_delivered_before_the_bus_closes(
        scheme: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    """A ``send_message`` that nothing can refuse is answered before its receivers run;
    the node's bus closed while they work through a backlog still delivers each one
    (they were acknowledged), before close() returns."""
    bus, port = server(scheme)
    got: list[int] = []
    release = threading.Event()
    bus.subscribe("slow:*", lambda message: (release.wait(WAIT), time.sleep(0.002),
                                             got.append(message.args[0])), weak=False)
    token = one_call(scheme, port, "connect_oneway", {"ttl": 60})
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        answers = Answers(sock, scheme)
        for i in range(200):
            send_request(sock, scheme, request_text("send_message", {
                "token": token, "identifier": "slow:x", "args": [i]}, id=i))
            assert answers.next()["result"] == "ok"
    assert got == []  # the first receiver holds the lane: the rest waits behind it
    release.set()
    bus.close()
    assert got == list(range(200)) and bus.losses.total == 0


@contextlib.contextmanager
def wait_threads_busy(bus: Bus, port: int, scheme: str) -> Iterator[None]:
    """Every thread of the node that may run waiting requests (ask) held by an ``ask``
    over TCP (on ``port``, or on a TCP server started beside an HTTP one), past the
    clients' socket timeout: a request waiting for such a thread would not be answered."""
    tcp_port = port if scheme == "tcp" else int(
        bus.transport("tcp").listen("tcp://127.0.0.1:0").rsplit(":", 1)[1])
    release = threading.Event()
    bus.subscribe("hold:on", lambda message: release.wait(3 * WAIT), weak=False)
    holders = []
    try:
        for i in range(WAIT_THREADS):
            sock = socket.create_connection(("127.0.0.1", tcp_port), timeout=WAIT)
            sock.sendall(request_text("ask", {"identifier": "hold:on", "timeout": WAIT}, id=i) + b"\n")
            holders.append(sock)
        yield
    finally:
        release.set()
        for sock in holders:
            sock.close()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("form", list(GET_FORMS))
def test_blocking_gets_need_no_thread(scheme: str, form: str,
                                      server: Callable[[str], tuple[Bus, int]]) -> None:
    """Every thread that may run waiting requests (ask) is busy; blocking gets still wait
    and are answered, because they wait on the I/O loop, not on a thread, however the
    client writes them."""
    bus, port = server(scheme)
    with wait_threads_busy(bus, port, scheme):
        tokens = [one_call(scheme, port, "connect_via_queue", {"identifier": f"w{i}:*"})
                  for i in range(5)]
        waiting = []
        for token in tokens:
            sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            send_request(sock, scheme, GET_FORMS[form](token, WAIT))
            waiting.append(sock)
        for i in range(5):
            bus.twitter(f"w{i}:news", i)
        for i, sock in enumerate(waiting):
            reply = Answers(sock, scheme).next()
            if form == "in-a-batch":  # the answers of both members, in the batch's order
                reply, graph = reply
                assert graph["result"]["bus"] == bus.name
            assert reply["result"] == [f"w{i}:news", [i], {}]
            sock.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_blocking_get_that_is_refused_needs_no_thread(
        scheme: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    """A ``get`` with a token the node does not know never waits: it is refused on the
    I/O loop, even while every thread for waiting requests is busy (a hundred of them
    once made the node start a thread each)."""
    bus, port = server(scheme)
    with wait_threads_busy(bus, port, scheme):
        for form in GET_FORMS.values():
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
                send_request(sock, scheme, form("A" * 43, WAIT))
                reply = Answers(sock, scheme).next()
                if type(reply) is list:
                    reply = reply[0]
                assert reply["error"]["code"] == p.UNKNOWN_TOKEN, reply
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            # a token that is no string at all (and cannot be looked up): Invalid params
            send_request(sock, scheme, request_text("get", {"token": [1], "timeout": WAIT}))
            assert Answers(sock, scheme).next()["error"]["code"] == p.INVALID_PARAMS


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_ask_in_a_batch_is_answered_by_its_timeout(
        scheme: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    """A receiver that never returns in time: the batch's ``ask`` is answered at its
    timeout with the replies so far and a TimeoutError entry, beside the batch's other
    answers, as if it had been sent alone."""
    bus, port = server(scheme)
    release = threading.Event()
    bus.subscribe("late:answer", lambda message: 1, weak=False)
    bus.subscribe("late:answer", lambda message: release.wait(3 * WAIT), weak=False)
    token = one_call(scheme, port, "connect_oneway", {"ttl": 60})
    batch = (b"[" + request_text("ask", {"identifier": "late:answer", "timeout": 0.5}) + b","
             + request_text("send_message", {"token": token, "identifier": "late:news"}, id=2)
             + b"]")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            send_request(sock, scheme, batch)
            asked, sent = Answers(sock, scheme).next()
        assert sent == {"jsonrpc": "2.0", "result": "ok", "id": 2}
        first, late = asked["result"]
        assert first == {"value": 1}
        assert late["error"]["type"] == "TimeoutError" and not release.is_set()
        # a batch of nothing but requests that may wait
        nobody = request_text("ask", {"identifier": "no:one", "timeout": 0.5})
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            send_request(sock, scheme, b"[" + nobody + b"," + nobody.replace(b'"id": 1', b'"id": 2')
                         + b"]")
            assert Answers(sock, scheme).next() == [
                {"jsonrpc": "2.0", "result": [], "id": 1}, {"jsonrpc": "2.0", "result": [], "id": 2}]
    finally:
        release.set()


def quick_call(scheme: str, port: int, method: str, params: dict[str, Any]) -> Any:
    """As :func:`one_call`, the whole answer (a result or an error)."""
    body = request_text(method, params)
    return half_closed(port, body + b"\n")[0] if scheme == "tcp" else post_body(port, body)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_slow_receiver_holds_up_no_other_clients_quick_requests(
        scheme: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    """While one client's message is with a receiver that takes its time (on the delivery
    lane), other clients open sessions, pull from their queues and read the graph at once:
    requests that deliver nothing wait for no receiver."""
    bus, port = server(scheme)
    started, release = threading.Event(), threading.Event()

    def slow(message: berrymq.Message) -> None:
        started.set()
        release.wait(3 * WAIT)  # past the clients' socket timeout, were they held up

    bus.subscribe("slow:work", slow, weak=False)
    try:
        token = one_call(scheme, port, "connect_oneway", {"ttl": 60})
        assert one_call(scheme, port, "send_message",
                        {"token": token, "identifier": "slow:work"}) == "ok"
        assert started.wait(WAIT)
        assert TOKEN.fullmatch(one_call(scheme, port, "connect_oneway", {"ttl": 60}))
        queue_token = one_call(scheme, port, "connect_via_queue", {"identifier": "fast:*"})
        assert quick_call(scheme, port, "get_nowait", {"token": queue_token})["error"][
            "code"] == p.EMPTY
        assert quick_call(scheme, port, "get", {"token": queue_token, "block": False})[
            "error"]["code"] == p.EMPTY
        assert one_call(scheme, port, "network", {})["bus"] == bus.name
        assert not release.is_set() and started.is_set()  # the receiver was running throughout
    finally:
        release.set()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_quick_request_comes_after_what_its_connection_sent_before(
        scheme: str, server: Callable[[str], tuple[Bus, int]]) -> None:
    """``send_message`` is answered before its receivers run; a ``get_nowait`` sent after
    it on the same connection still sees what those receivers stored."""
    bus, port = server(scheme)
    started, release = threading.Event(), threading.Event()

    def relay(message: berrymq.Message) -> None:
        started.set()
        release.wait(WAIT)
        bus.twitter("relay:done", *message.args)

    bus.subscribe("relay:start", relay, weak=False)
    queue_token = one_call(scheme, port, "connect_via_queue", {"identifier": "relay:done"})
    token = one_call(scheme, port, "connect_oneway", {"ttl": 60})
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sent = request_text("send_message", {"token": token, "identifier": "relay:start",
                                        "args": [7]})
        send_request(sock, scheme, sent)
        answers = Answers(sock, scheme)
        assert answers.next()["result"] == "ok"
        send_request(sock, scheme, request_text("get_nowait", {"token": queue_token}, id=2))
        assert started.wait(WAIT)
        release.set()
        assert answers.next()["result"] == ["relay:done", [7], {}]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("method", ["network", "send_messages"])  # on the loop, on the lane
def test_a_request_whose_answering_fails_is_answered_internal_error(
        scheme: str, method: str, server: Callable[[str], tuple[Bus, int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A defect inside the node never leaves the client waiting for an answer."""
    bus, port = server(scheme)
    service = bus.transport(scheme).service  # type: ignore[attr-defined]

    def broken(request: Any, context: Any = None) -> bytes | None:
        raise RuntimeError("a defect inside the node")

    monkeypatch.setattr(service, "handle_parsed", broken)
    reply = quick_call(scheme, port, method, {})
    assert reply == {"jsonrpc": "2.0", "error": {"code": p.INTERNAL_ERROR,
                                                 "message": "Internal error"}, "id": 1}


class Answers:
    """The answers read from a connection one after the other (TCP lines, or the bodies
    of kept-alive HTTP answers)."""

    def __init__(self, sock: socket.socket, scheme: str) -> None:
        self.sock, self.scheme, self.data = sock, scheme, b""

    def next(self) -> Any:
        while True:
            if self.scheme == "tcp":
                line, nl, rest = self.data.partition(b"\n")
                if nl:
                    self.data = rest
                    return json.loads(line)
            else:
                head, blank, rest = self.data.partition(b"\r\n\r\n")
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), None)
                if blank and length is not None and len(rest) >= length:
                    self.data = rest[length:]
                    return json.loads(rest[:length])
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.data += chunk


# -- clients in other languages ----------------------------------------------------------------

#: A bare Node.js client, written from docs/protocol.md with Node's own net and http
#: modules: over each transport a session and a message with a non-ASCII argument.
NODE_CLIENT = r"""
const net = require("net"), http = require("http");
const [tcpPort, httpPort] = process.argv.slice(2).map(Number);
let sock = null, lineBuf = "", waiting = [];
function tcpCall(obj) {
  return new Promise((resolve, reject) => {
    if (sock === null) {
      sock = net.connect(tcpPort, "127.0.0.1");
      sock.setEncoding("utf8");
      sock.on("data", d => { lineBuf += d; let i;
        while ((i = lineBuf.indexOf("\n")) >= 0) {
          const line = lineBuf.slice(0, i); lineBuf = lineBuf.slice(i + 1);
          waiting.shift()(JSON.parse(line)); } });
      sock.on("error", reject);
    }
    waiting.push(resolve);
    sock.write(JSON.stringify(obj) + "\n");
  });
}
function httpCall(obj) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(obj);
    const req = http.request({host: "127.0.0.1", port: httpPort, method: "POST", path: "/",
      headers: {"Content-Type": "application/json", "Content-Length": Buffer.byteLength(body)}},
      res => { let d = ""; res.on("data", c => d += c); res.on("end", () => resolve(JSON.parse(d))); });
    req.on("error", reject); req.end(body);
  });
}
(async () => {
  const out = [];
  for (const call of [tcpCall, httpCall]) {
    const tok = (await call({jsonrpc: "2.0", method: "connect_oneway", params: {ttl: 60}, id: 1})).result;
    out.push(await call({jsonrpc: "2.0", method: "send_message", params: {token: tok,
      identifier: "js:node", args: [call.name, "ünï"], kwargs: {n: 1}}, id: 2}));
  }
  sock.end();
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""


def test_a_node_js_client_over_tcp_and_http(bus_factory: Callable[..., Bus],
                                            tmp_path: Path) -> None:
    node_js = required_program("node", "nodejs")
    bus = bus_factory()
    ports = [bus.transport(scheme).listen(f"{scheme}://127.0.0.1:0").rsplit(":", 1)[1]
             for scheme in ("tcp", "http")]
    received = berrymq.Queue("js:*", bus=bus)
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT, encoding="utf-8")
    done = subprocess.run([node_js, str(script), *ports], capture_output=True, text=True,
                          encoding="utf-8", timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"jsonrpc": "2.0", "result": "ok", "id": 2}] * 2
    got = [received.get(timeout=WAIT) for _ in range(2)]
    assert [(m.id, m.args, m.kwargs) for m in got] == [
        ("js:node", (name, "ünï"), {"n": 1}) for name in ("tcpCall", "httpCall")]


def test_curl_as_a_client(server: Callable[[str], tuple[Bus, int]]) -> None:
    program = required_program("curl", "curl")
    _, port = server("http")

    def curl(*args: str) -> str:
        done = subprocess.run([program, "-sS", "--noproxy", "*", "-H",
                               "Content-Type: application/json", *args,
                               f"http://127.0.0.1:{port}/"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    answer = curl("--data", request_text("connect_oneway", {"ttl": 60}).decode())
    assert TOKEN.fullmatch(json.loads(answer)["result"]), answer
    note = request_text("no_such", {}, id=None).decode()  # a notification: 204, no body
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "--data", note) == "204"


#: an integer JSON allows and a float cannot hold
BEYOND_FLOATS = int("9" * 400)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_integer_beyond_a_floats_range_is_taken_as_a_large_number(
        server: Callable[[str], tuple[Bus, int]], scheme: str) -> None:
    """An ask's timeout and a session's ttl of 400 digits: the ask went unanswered (over
    TCP the connection closed, with the requests behind it; in a batch no member was
    answered), and a ttl was an Internal error, each with a traceback in the log, before
    the secret was checked. They meet the bounds 1e308 meets."""
    _, port = server(scheme)
    big_ask = request("ask", {"identifier": "nobody:x", "timeout": BEYOND_FLOATS}, 1)
    big_ttl = request("connect_oneway", {"ttl": BEYOND_FLOATS}, 2)
    after = request("ask", {"identifier": "nobody:x"}, 3)
    if scheme == "tcp":
        raw = Raw(port)
        try:
            raw.send(big_ask, big_ttl, after)
            answers = sorted((raw.line() for _ in range(3)), key=lambda a: a["id"])
            raw.send([big_ask, after])
            batch = raw.line()
        finally:
            raw.close()
    else:
        answers = [http_post(port, obj) for obj in (big_ask, big_ttl, after)]
        batch = http_post(port, [big_ask, after])
    assert answers[0] == {"jsonrpc": "2.0", "result": [], "id": 1}
    error = answers[1]["error"]
    assert error["code"] == -32009 and error["data"]["setting"] == "max_ttl", error
    assert answers[2] == {"jsonrpc": "2.0", "result": [], "id": 3}
    assert sorted(answer["id"] for answer in batch) == [1, 3]


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_request_after_a_byte_order_mark_is_served(
        server: Callable[[str], tuple[Bus, int]], scheme: str) -> None:
    """A file saved with a UTF-8 BOM and sent as it is (curl --data-binary @req.json,
    socat): RFC 8259 lets a parser ignore the mark; it was a Parse error."""
    _, port = server(scheme)
    body = b"\xef\xbb\xbf" + request_text("ask", {"identifier": "nobody:x"}, 7)
    if scheme == "tcp":
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(body + b"\n")
            answer = json.loads(sock.makefile("rb").readline())
    else:
        answer = post_body(port, body)
    assert answer == {"jsonrpc": "2.0", "result": [], "id": 7}
