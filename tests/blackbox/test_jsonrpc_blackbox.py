"""Independent black-box check of issue 3: JSON-RPC between processes, over TCP and HTTP.

Written from SPEC sections 7 and 9, issue 3 and ``docs/protocol.md`` alone. Every node runs
in a subprocess (``berrymq serve`` or a small command-driven worker using the public API);
the raw clients below are bare sockets written here (plus ``http.client``, ``curl`` and a
few lines of Node.js), not berryMQ's own client. Servers bind 127.0.0.1 on free ports.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable
BERRYMQ = [PY, "-m", "berrymq"]
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Words that would show a Python internal leaking into an error object.
LEAKS = ("Traceback", "File \"", "KeyError", "TypeError", "AttributeError", "Expecting",
         "line 1 column", "object has no attribute", "codec can't", "jsonschema", "site-packages")
STARTUP = 20.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BERRYMQ_SECRET"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a node started with `berrymq serve` ---------------------------------------------------


class Served:
    """``berrymq serve --tcp 127.0.0.1:0 --http 127.0.0.1:0 --print PATTERN`` in a subprocess."""

    def __init__(self, *extra: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*BERRYMQ, "serve", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env or _env())
        self.lines: queue.Queue[str] = queue.Queue()
        self.urls: dict[str, str] = {}
        deadline = time.monotonic() + STARTUP
        assert self.proc.stdout is not None
        while len(self.urls) < 2:
            assert time.monotonic() < deadline, "serve did not print its URLs"
            line = self.proc.stdout.readline()
            assert line, f"serve ended: {self.proc.stderr.read() if self.proc.stderr else ''}"
            m = re.match(r"serving ((tcp|http)://127\.0\.0\.1:\d+)", line)
            if m:
                self.urls[m.group(2)] = m.group(1)
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def addr(self, scheme: str) -> tuple[str, int]:
        host, port = self.urls[scheme].split("//")[1].rsplit(":", 1)
        return host, int(port)

    def printed(self, what: str, timeout: float = 10.0) -> list[str]:
        """Lines printed until one containing ``what``."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{what!r} never printed; got {got}") from None
            got.append(line)
            if what in line:
                return got

    def stop(self, signal_it: bool = True) -> tuple[int, str]:
        if signal_it and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("serve did not stop on SIGINT within 10 s") from None
        err = self.proc.stderr.read() if self.proc.stderr else ""
        self.pump.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return rc, err


@pytest.fixture(scope="module")
def node() -> Iterator[Served]:
    served = Served("--print", "bb:*")
    yield served
    rc, err = served.stop()
    assert rc == 0, err
    assert "Traceback" not in err, err


# -- raw clients written from docs/protocol.md -----------------------------------------------


class Line:
    """A bare TCP client: one JSON text per line."""

    def __init__(self, addr: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, obj: Any) -> None:
        self.sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def read_line(self) -> bytes | None:
        """The next line, or None at EOF."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def recv(self) -> Any:
        line = self.read_line()
        assert line is not None, "connection closed instead of answering"
        return json.loads(line)

    def call(self, raw: bytes | Any) -> Any:
        if isinstance(raw, bytes):
            self.send_raw(raw + b"\n")
        else:
            self.send(raw)
        return self.recv()

    def close(self) -> None:
        self.sock.close()


def http_raw(addr: tuple[str, int], body: bytes, *, method: str = "POST", path: str = "/",
             ctype: str | None = "application/json",
             extra: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 exchange on a bare socket (Connection: close)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    if ctype is not None:
        head += f"Content-Type: {ctype}\r\n".encode()
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode() + extra + b"\r\n"
    with socket.create_connection(addr, timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    header, _, rest = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    return status, headers, rest


def http_call(addr: tuple[str, int], raw: bytes | Any) -> Any:
    body = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    status, headers, rest = http_raw(addr, body)
    if status == 204:
        return None
    assert status == 200, (status, rest)
    assert headers["content-type"].startswith("application/json")
    return json.loads(rest)


class Both:
    """Send the same raw text over TCP (a fresh line connection) or HTTP."""

    def __init__(self, served: Served, scheme: str) -> None:
        self.served = served
        self.scheme = scheme
        self.conn: Line | None = None

    def call(self, raw: bytes | Any) -> Any:
        """Over HTTP one request per connection; over TCP one connection for all (sessions
        opened on a TCP connection close with it)."""
        if self.scheme == "http":
            return http_call(self.served.addr("http"), raw)
        if self.conn is None:
            self.conn = Line(self.served.addr("tcp"))
        return self.conn.call(raw)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def token(self, ttl: float = 60) -> str:
        reply = self.call({"jsonrpc": "2.0", "method": "connect_oneway",
                           "params": {"ttl": ttl}, "id": 1})
        return str(reply["result"])


def fresh_token(served: Served, scheme: str) -> str:
    """A new session's token, on a connection of its own (closed again)."""
    client = Both(served, scheme)
    try:
        return client.token()
    finally:
        client.close()


@pytest.fixture(params=["tcp", "http"])
def both(request: pytest.FixtureRequest, node: Served) -> Iterator[Both]:
    client = Both(node, request.param)
    yield client
    client.close()


def rq(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    if id is not ...:
        obj["id"] = id
    return obj


def assert_error(reply: Any, code: int, id: Any = ...) -> dict[str, Any]:
    assert isinstance(reply, dict), reply
    assert reply.get("jsonrpc") == "2.0", reply
    assert "result" not in reply, reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str)
    if id is not ...:
        assert reply["id"] == id, reply
    text = json.dumps(reply["error"])
    for leak in LEAKS:
        assert leak not in text, f"internal detail {leak!r} leaked: {text}"
    return reply["error"]


# -- the wire protocol, as the SPEC table -----------------------------------------------------


def test_spec_table_methods_and_results(both: Both, node: Served) -> None:
    oneway = both.call(rq("connect_oneway", {"ttl": 60}, 1))
    assert oneway["id"] == 1 and TOKEN_RE.match(oneway["result"]), oneway
    q = both.call(rq("connect_via_queue", {"identifier": "bb:*", "ttl": 60}, 2))["result"]
    assert TOKEN_RE.match(q) and q != oneway["result"]
    tok = oneway["result"]
    sent = both.call(rq("send_message", {"token": tok, "identifier": "bb:one",
                                         "args": [1, "two"], "kwargs": {"k": [3]}}, 3))
    assert sent == {"jsonrpc": "2.0", "result": "ok", "id": 3}
    # by position, in the order of the table
    assert both.call(rq("send_message", [tok, "bb:two", [2], {}], 4))["result"] == "ok"
    got = both.call(rq("get", {"token": q, "block": True, "timeout": 5}, 5))
    assert got == {"jsonrpc": "2.0", "result": ["bb:one", [1, "two"], {"k": [3]}], "id": 5}
    assert both.call(rq("get_nowait", {"token": q}, 6))["result"] == ["bb:two", [2], {}]
    assert_error(both.call(rq("get_nowait", {"token": q}, 7)), -32002, 7)
    assert_error(both.call(rq("get", {"token": q, "block": True, "timeout": 0.05}, 8)), -32002)
    assert both.call(rq("close_connection", {"token": q}, 9))["result"] == "ok"
    assert_error(both.call(rq("get_nowait", {"token": q}, 10)), -32001, 10)
    assert both.call(rq("close_connection", {"token": tok}, 11))["result"] == "ok"
    assert_error(both.call(rq("send_message", {"token": tok, "identifier": "bb:x"}, 12)),
                 -32001)
    # the node's receivers had them (serve --print bb:*)
    node.printed("bb:two")


def test_tokens_are_unguessable_and_distinct(both: Both) -> None:
    tokens = {both.token() for _ in range(20)}
    assert len(tokens) == 20
    for t in tokens:
        assert TOKEN_RE.match(t)  # 43 url-safe base64 chars = 256 bits >= 128


def test_short_ttl_expires_session(both: Both) -> None:
    q = both.call(rq("connect_via_queue", {"identifier": "bb:ttl", "ttl": 0.3}, 1))["result"]
    deadline = time.monotonic() + 10
    while True:  # poll with a deadline (each poll is not a use after expiry: -32001 ends it)
        reply = both.call(rq("get_nowait", {"token": q}, 2))
        if reply.get("error", {}).get("code") == -32001:
            break
        assert_error(reply, -32002)
        assert time.monotonic() < deadline, "session never expired"
        time.sleep(0.35)  # longer than the ttl: the next poll must find it expired
    assert_error(both.call(rq("send_message", {"token": q, "identifier": "bb:ttl"}, 3)),
                 -32001)


def test_unknown_and_malformed_tokens(both: Both) -> None:
    assert_error(both.call(rq("get_nowait", {"token": "A" * 43}, 1)), -32001, 1)
    assert_error(both.call(rq("get_nowait", {"token": "short"}, 2)), -32008, 2)
    assert_error(both.call(rq("get_nowait", {"token": 5}, 3)), -32602, 3)
    assert_error(both.call(rq("get_nowait", {}, 4)), -32602, 4)


def test_local_names_refused_on_the_wire(both: Both) -> None:
    tok = both.token()
    err = assert_error(both.call(rq("send_message", {"token": tok, "identifier": "_x:y"}, 1)),
                       -32602, 1)
    assert "local" in json.dumps(err)
    assert_error(both.call(rq("connect_via_queue", {"identifier": "_x:*"}, 2)), -32602, 2)


# -- JSON-RPC 2.0 conformance ---------------------------------------------------------------

PARSE_ERRORS = [
    b'{"jsonrpc":"2.0","method":',
    b'\xff\xfe{"jsonrpc":"2.0","method":"connect_oneway","id":1}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","id":"\xc3\x28"}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":NaN},"id":1}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":Infinity},"id":1}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":-Infinity},"id":1}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":1e999},"id":1}',
    b"[" * 100000 + b"]" * 100000,
    b'{"a":' * 50000 + b"1" + b"}" * 50000,
]


@pytest.mark.parametrize("raw", PARSE_ERRORS, ids=range(len(PARSE_ERRORS)))
def test_parse_errors(both: Both, raw: bytes) -> None:
    assert_error(both.call(raw), -32700, None)


INVALID = [
    b'{"jsonrpc":"1.0","method":"connect_oneway","id":1}',
    b'{"jsonrpc":"2.0","method":5,"id":1}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","params":5,"id":1}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","params":"ttl","id":1}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","id":true}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","id":{}}',
    b'{"jsonrpc":"2.0","method":"connect_oneway","id":1,"extra":1}',
    b"[]", b'"x"', b"5",
]


@pytest.mark.parametrize("raw", INVALID, ids=range(len(INVALID)))
def test_invalid_requests(both: Both, raw: bytes) -> None:
    assert_error(both.call(raw), -32600, None)


def test_an_object_without_jsonrpc_is_json_rpc_1_0(both: Both) -> None:
    # issue 11: answered in 1.0 form (result and error, one null; no "jsonrpc")
    reply = both.call(b'{"method":"connect_oneway","id":1}')
    assert set(reply) == {"result", "error", "id"} and reply["error"] is None, reply
    assert isinstance(reply["result"], str) and reply["id"] == 1
    reply = both.call(b"{}")
    assert reply == {"result": None, "id": None,
                     "error": {"code": -32600, "message": "Invalid Request"}}, reply


def test_unknown_method_and_bad_params(both: Both) -> None:
    err = assert_error(both.call(rq("no_such", None, 9)), -32601, 9)
    assert err.get("data") == "no_such"
    assert_error(both.call(rq("__init__", None, 9)), -32601, 9)
    for params in ({"ttl": 0}, {"ttl": -1}, {"ttl": "x"}, {"ttl": True}, {"bogus": 1},
                   [1, 2, 3]):
        assert_error(both.call(rq("connect_oneway", params, 2)), -32602, 2)
    tok = both.token()
    for params in ({"token": tok, "identifier": "te*:x"},
                   {"token": tok, "identifier": "a:b", "args": {"x": 1}},
                   {"token": tok, "identifier": "a:b", "kwargs": [1]},
                   {"token": tok, "identifier": 5},
                   {"token": tok}):
        assert_error(both.call(rq("send_message", params, 3)), -32602, 3)
    assert_error(both.call(rq("get_nowait", {"token": tok}, 4)), -32006, 4)


@pytest.mark.parametrize("id", ["abc", 7, -1, 1.5, None, 123456789012345678901234567890, ""])
def test_ids_echoed(both: Both, id: Any) -> None:
    reply = both.call(rq("connect_oneway", {"ttl": 60}, id))
    assert reply["id"] == id and type(reply["id"]) is type(id)
    assert TOKEN_RE.match(reply["result"])


def test_huge_numbers_and_duplicate_keys(both: Both) -> None:
    tok = both.token()
    big = 123456789012345678901234567890123456789
    reply = both.call(rq("send_message", {"token": tok, "identifier": "bb:big",
                                          "args": [big, 1e308, -0.0]}, 1))
    assert reply["result"] == "ok"
    # duplicate keys: a well-defined outcome (last one wins or a -326xx error), no crash
    reply = both.call(b'{"jsonrpc":"2.0","method":"connect_oneway","params":{"ttl":60},'
                      b'"id":8,"id":9}')
    assert reply.get("id") in (8, 9, None)
    assert ("result" in reply) != ("error" in reply)


def test_notifications_never_answered(node: Served) -> None:
    # TCP: a notification then a request: only the request is answered, in order
    conn = Line(node.addr("tcp"))
    try:
        tok = conn.call(rq("connect_oneway", {"ttl": 60}, 1))["result"]
        conn.send(rq("send_message", {"token": tok, "identifier": "bb:note"}, ...))
        conn.send(rq("no_such_method", None, ...))           # a failing notification
        conn.send_raw(b'{"jsonrpc":"2.0","method":"send_message","params":{"token":5}}\n')
        conn.send([rq("no_such", None, ...), rq("connect_oneway", None, ...)])  # all-notif
        conn.send(rq("no_such", None, "last"))
        assert conn.recv()["id"] == "last"
    finally:
        conn.close()
    # HTTP: 204 and no body for a notification and for a batch of notifications
    addr = node.addr("http")
    status, _, body = http_raw(addr, json.dumps(rq("no_such", None, ...)).encode())
    assert (status, body) == (204, b"")
    batch = [rq("no_such", None, ...), rq("connect_oneway", None, ...)]
    status, _, body = http_raw(addr, json.dumps(batch).encode())
    assert (status, body) == (204, b"")


def test_batches(both: Both) -> None:
    replies = both.call(b"[1,2,3]")
    assert isinstance(replies, list) and len(replies) == 3
    for r in replies:
        assert_error(r, -32600, None)
    q = both.call(rq("connect_via_queue", {"identifier": "bb:batch", "ttl": 60}, 1))["result"]
    tok = both.token()
    batch = [rq("send_message", {"token": tok, "identifier": "bb:batch", "args": [1]}, "a"),
             rq("send_message", {"token": tok, "identifier": "bb:batch", "args": [2]}, ...),
             7,
             {"jsonrpc": "2.0", "method": 1, "id": "bad"},
             rq("no_such", None, "c"),
             rq("get_nowait", {"token": q}, "d")]
    replies = both.call(batch)
    assert isinstance(replies, list)
    by_id: dict[Any, Any] = {}
    nulls = []
    for r in replies:
        if r["id"] is None:
            nulls.append(r)
        else:
            by_id[r["id"]] = r
    assert set(by_id) == {"a", "c", "d"} and len(nulls) == 2, replies
    assert by_id["a"]["result"] == "ok"
    assert_error(by_id["c"], -32601)
    assert by_id["d"]["result"] == ["bb:batch", [1], {}]
    for r in nulls:
        assert_error(r, -32600, None)
    # the notification member ran too
    assert both.call(rq("get_nowait", {"token": q}, 2))["result"] == ["bb:batch", [2], {}]


# -- HTTP framing -----------------------------------------------------------------------------


def test_http_framing(node: Served) -> None:
    addr = node.addr("http")
    body = json.dumps(rq("connect_oneway", {"ttl": 60}, 1)).encode()
    status, headers, rest = http_raw(addr, body)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert TOKEN_RE.match(json.loads(rest)["result"])
    for method, path, ctype, code in [("GET", "/", None, 200),  # the status page (SPEC 9)
                                      ("DELETE", "/", None, 405), ("PUT", "/", "application/json",
                                       405), ("POST", "/rpc", "application/json", 404),
                                      ("POST", "/", "text/plain", 415),
                                      # issue 11: no Content-Type is accepted (tinyrpc)
                                      ("POST", "/", None, 200),
                                      ("POST", "/", "application/x-www-form-urlencoded", 415)]:
        status, headers, rest = http_raw(addr, body, method=method, path=path, ctype=ctype)
        assert status == code, (method, path, ctype, status, rest)
        assert b"Traceback" not in rest
    # no Content-Length -> 411
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n" + body)
        assert s.recv(100).startswith(b"HTTP/1.1 411")
    # keep-alive with http.client: many requests on one connection
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        for i in range(20):
            conn.request("POST", "/", body=json.dumps(rq("connect_oneway", None, i)),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["id"] == i
    finally:
        conn.close()


# -- limits and misbehaving clients ---------------------------------------------------------

LIMIT = 1 << 20


def _sized(n: int) -> bytes:
    head = b'{"jsonrpc":"2.0","method":"no_such","params":["'
    tail = b'"],"id":1}'
    return head + b"a" * (n - len(head) - len(tail)) + tail


def test_too_large_tcp_closes_only_that_connection(node: Served) -> None:
    other = Line(node.addr("tcp"))
    tok = other.call(rq("connect_oneway", None, 1))["result"]
    conn = Line(node.addr("tcp"))
    assert_error(conn.call(_sized(LIMIT)), -32601, 1)  # exactly the limit is accepted
    conn.send_raw(_sized(LIMIT + 1) + b"\n")
    err = assert_error(conn.recv(), -32003, None)
    assert err["data"] == {"limit": LIMIT, "setting": "max_size"}
    assert conn.read_line() is None  # then closed
    conn.close()
    # an endless line without a newline is cut at the limit too
    conn = Line(node.addr("tcp"))
    with contextlib.suppress(OSError):
        for _ in range(12):
            conn.send_raw(b"a" * 100000)
    assert_error(conn.recv(), -32003, None)
    conn.close()
    assert other.call(rq("send_message", {"token": tok, "identifier": "bb:x"}, 2))["result"] == "ok"
    other.close()


def test_too_large_http_413(node: Served) -> None:
    addr = node.addr("http")
    assert http_raw(addr, _sized(LIMIT))[0] == 200
    status, _, rest = http_raw(addr, _sized(LIMIT + 1))
    assert status == 413
    err = assert_error(json.loads(rest), -32003, None)
    assert err["data"] == {"limit": LIMIT, "setting": "max_size"}
    with socket.create_connection(addr, timeout=10) as s:  # a lying Content-Length
        s.sendall(b"POST / HTTP/1.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 99999999999999\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    assert TOKEN_RE.match(fresh_token(node, "http"))


def test_stalled_and_silent_clients_do_not_block_others(node: Served) -> None:
    stalled = [socket.create_connection(node.addr("tcp")),
               socket.create_connection(node.addr("http")),
               socket.create_connection(node.addr("tcp")),   # sends nothing
               socket.create_connection(node.addr("http"))]  # sends nothing
    stalled[0].sendall(b'{"jsonrpc":"2.0","method":"connect_')
    stalled[1].sendall(b"POST / HTTP/1.1\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100\r\n\r\n{\"jsonrpc\"")
    try:
        for scheme in ("tcp", "http"):
            t0 = time.monotonic()
            assert TOKEN_RE.match(fresh_token(node, scheme))
            assert time.monotonic() - t0 < 2.0
    finally:
        for s in stalled:
            s.close()


def test_sigkilled_client_mid_stream(node: Served, tmp_path: Path) -> None:
    script = tmp_path / "flood.py"
    script.write_text(
        "import socket, sys, json\n"
        f"s = socket.create_connection(('127.0.0.1', {node.addr('tcp')[1]}))\n"
        "s.sendall(b'{\"jsonrpc\":\"2.0\",\"method\":\"connect_oneway\",\"id\":1}\\n')\n"
        "tok = json.loads(s.makefile('rb').readline())['result']\n"
        "line = json.dumps({'jsonrpc':'2.0','method':'send_message','params':{'token':tok,"
        "'identifier':'flood:x','args':['x'*100]}}).encode() + b'\\n'\n"
        "print('go', flush=True)\n"
        "while True:\n"
        "    s.sendall(line * 50 + line[:37])\n"  # always stops mid-line
        "    s.sendall(line[37:])\n")
    proc = subprocess.Popen([PY, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "go\n"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    for scheme in ("tcp", "http"):
        assert TOKEN_RE.match(fresh_token(node, scheme))


def test_quick_connect_disconnect(node: Served) -> None:
    deadline = time.monotonic() + 5.0
    for i in range(200):
        socket.create_connection(node.addr("tcp" if i % 2 else "http")).close()
        assert time.monotonic() < deadline, f"only {i} quick connections within 5 s"
    for scheme in ("tcp", "http"):
        assert TOKEN_RE.match(fresh_token(node, scheme))


def test_quick_connect_disconnect_still_served(node: Served) -> None:
    """The same, without the timing: nothing crashes and the node keeps serving."""
    for i in range(40):
        socket.create_connection(node.addr("tcp" if i % 2 else "http")).close()
    for scheme in ("tcp", "http"):
        assert TOKEN_RE.match(fresh_token(node, scheme))


def test_tcp_unhashable_method_is_invalid_request() -> None:
    served = Served()  # a node of its own: the bug prints a traceback on the node's stderr
    conn = Line(served.addr("tcp"))
    try:
        conn.send_raw(b'{"jsonrpc":"2.0","method":[],"id":1}\n')
        line = conn.read_line()
        assert line is not None, "connection closed instead of answering -32600"
        assert_error(json.loads(line), -32600, None)
    finally:
        conn.close()
        rc, err = served.stop()
    assert rc == 0 and "Traceback" not in err, err


def test_http_unhashable_method_is_invalid_request(node: Served) -> None:
    for raw in (b'{"jsonrpc":"2.0","method":[],"id":1}', b'{"jsonrpc":"2.0","method":{},"id":1}'):
        assert_error(http_call(node.addr("http"), raw), -32600, None)


def test_tcp_null_is_invalid_request(node: Served) -> None:
    conn = Line(node.addr("tcp"))
    try:
        assert_error(conn.call(b"null"), -32600, None)
    finally:
        conn.close()


def test_http_null_is_invalid_request(node: Served) -> None:
    assert_error(http_call(node.addr("http"), b"null"), -32600, None)


# -- the shared secret ------------------------------------------------------------------------


def test_secret_required_and_compared() -> None:
    served = Served(env=_env(BERRYMQ_SECRET="correct horse"))
    try:
        for scheme in ("tcp", "http"):
            b = Both(served, scheme)
            assert_error(b.call(rq("connect_oneway", {"ttl": 60}, 1)), -32004, 1)
            assert_error(b.call(rq("connect_oneway", {"ttl": 60, "secret": "wrong"}, 2)),
                         -32004, 2)
            assert_error(b.call(rq("connect_oneway", {"ttl": 60, "secret": ""}, 2)), -32004)
            ok = b.call(rq("connect_oneway", {"ttl": 60, "secret": "correct horse"}, 3))
            assert TOKEN_RE.match(ok["result"])
            b.close()
    finally:
        rc, err = served.stop()
    assert rc == 0, err


def test_non_loopback_bind_refused_without_secret() -> None:
    proc = subprocess.run([*BERRYMQ, "serve", "--tcp", "0.0.0.0:0", "--http", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=30, env=_env())
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("berrymq: error:") and "secret" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    code = ("import berrymq\n"
            "try:\n    berrymq.init_connection(('0.0.0.0', 0))\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n"
            "else:\n    print('BOUND')\n")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=30,
                         env=_env()).stdout
    assert "BOUND" not in out and "secret" in out.lower(), out


# -- the public API between subprocesses ------------------------------------------------------

WORKER = r'''
import json, sys, threading
import berrymq

lock = threading.Lock()

def emit(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

def on_message(message):
    emit({"event": message.id, "args": list(message.args), "kwargs": dict(message.kwargs)})

def addr(value):
    return tuple(value) if isinstance(value, list) else value

for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    try:
        result = None
        if op == "serve":
            result = berrymq.init_connection(addr(cmd["addr"]))
        elif op == "follow":
            berrymq.regist_function(cmd["pattern"], on_message)
        elif op == "interconnect":
            berrymq.interconnect(addr(cmd["addr"]))
        elif op == "oneway":
            berrymq.connect_oneway(addr(cmd["addr"]))
        elif op == "queue":
            berrymq.connect_via_queue(addr(cmd["addr"]), cmd["pattern"])
        elif op == "twitter":
            berrymq.twitter(cmd["id"], *cmd.get("args", []), **cmd.get("kwargs", {}))
        elif op == "send":
            berrymq.send_message(cmd["id"], *cmd.get("args", []), **cmd.get("kwargs", {}))
        elif op == "get":
            m = berrymq.get(timeout=cmd["timeout"])
            result = [m.id, list(m.args), m.kwargs, type(m.args).__name__]
        elif op == "get_nowait":
            m = berrymq.get_nowait()
            result = [m.id, list(m.args), m.kwargs]
        elif op == "close":
            berrymq.close_connection(addr(cmd.get("addr")))
    except Exception as exc:
        emit({"reply": op, "error": type(exc).__name__ + ": " + str(exc)})
    else:
        emit({"reply": op, "ok": result})
'''


class Worker:
    """A process using berryMQ's public API, driven by JSON commands."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.err = open(path.parent / f"{name}.err", "w+")
        self.proc = subprocess.Popen([PY, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=_env())
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            obj = json.loads(line)
            (self.replies if "reply" in obj else self.events).put(obj)

    def call(self, op: str, **kw: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self.replies.get(timeout=20)
        except queue.Empty:
            raise AssertionError(f"{self.name}: {op} got no reply") from None
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply["ok"]

    def wait_for(self, ident: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """All events seen so far, once ``ident`` is among them."""
        deadline = time.monotonic() + timeout
        while not any(e["event"] == ident for e in self.seen):
            try:
                self.seen.append(self.events.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{self.name} never got {ident}: {self.seen}") from None
        return self.seen

    def quiet(self, window: float = 0.3) -> list[dict[str, Any]]:
        """Whatever else arrives within a short window (to show nothing more came)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.seen.append(self.events.get(timeout=window))
        return self.seen

    def count(self, ident: str) -> int:
        return sum(e["event"] == ident for e in self.seen)

    def stop(self) -> str:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not exit") from None
        self.reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.err.seek(0)
        text = self.err.read()
        self.err.close()
        return text


class WorkerError(Exception):
    pass


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Any]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    made: list[Worker] = []

    def make(n: int) -> list[Worker]:
        new = [Worker(script, f"w{len(made) + i}") for i in range(n)]
        made.extend(new)
        return new

    yield make
    errors = [(w.name, w.stop()) for w in made]
    for name, text in errors:
        assert "Traceback" not in text, f"{name} stderr:\n{text}"


def _url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:0"


@pytest.mark.parametrize("scheme", ["tcp", "http", "tuple"])
def test_style02_oneway(workers: Any, scheme: str) -> None:
    server, client = workers(2)
    addr = server.call("serve", addr=["127.0.0.1", 0] if scheme == "tuple" else _url(scheme))
    if scheme == "tuple":
        assert isinstance(addr, list) and addr[0] == "127.0.0.1" and addr[1] > 0
    else:
        assert re.match(rf"{scheme}://127\.0\.0\.1:\d+", addr) and not addr.endswith(":0")
    server.call("follow", pattern="job:*")
    server.call("follow", pattern="_x:*")
    client.call("oneway", addr=addr)
    with pytest.raises(WorkerError, match="ValueError.*local"):
        client.call("send", id="_x:y")
    client.call("send", id="job:done", args=[1, "two", None], kwargs={"user": "bob"})
    client.call("send", id="job:end")
    seen = server.wait_for("job:end")
    assert [e["event"] for e in seen] == ["job:done", "job:end"]
    assert seen[0]["args"] == [1, "two", None] and seen[0]["kwargs"] == {"user": "bob"}
    client.call("close", addr=addr)
    with pytest.raises(WorkerError, match="ConnectionClosed"):
        client.call("send", id="job:late")


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_style03_queue(workers: Any, scheme: str) -> None:
    server, client = workers(2)
    addr = server.call("serve", addr=_url(scheme))
    server.call("follow", pattern="up:*")
    client.call("queue", addr=addr, pattern="job:*")
    server.call("twitter", id="job:a", args=[1], kwargs={"k": "v"})
    server.call("twitter", id="other:b")
    server.call("twitter", id="_job:c")
    server.call("twitter", id="job:d")
    assert client.call("get", timeout=10) == ["job:a", [1], {"k": "v"}, "tuple"]
    assert client.call("get", timeout=10)[0] == "job:d"
    with pytest.raises(WorkerError, match="Empty"):
        client.call("get_nowait")
    with pytest.raises(WorkerError, match="Empty"):
        client.call("get", timeout=0.1)
    client.call("send", id="up:from_client", args=[2])
    assert server.wait_for("up:from_client")[-1]["args"] == [2]
    client.call("close")


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_style01_both_ways_local_stays(workers: Any, scheme: str) -> None:
    a, b = workers(2)
    addr = a.call("serve", addr=_url(scheme))
    if scheme == "http":
        b.call("serve", addr=_url(scheme))  # over HTTP both sides serve
    for w in (a, b):
        w.call("follow", pattern="chat:*")
        w.call("follow", pattern="_chat:*")
    b.call("interconnect", addr=addr)
    a.call("twitter", id="chat:from_a", args=[1])
    a.call("twitter", id="_chat:local_a")
    a.call("twitter", id="chat:end_a")
    b.call("twitter", id="chat:from_b", args=[2])
    b.call("twitter", id="_chat:local_b")
    b.call("twitter", id="chat:end_b")
    for w in (a, b):
        w.wait_for("chat:end_a")
        w.wait_for("chat:end_b")
        w.quiet()
    for w, mine, theirs in ((a, "_chat:local_a", "_chat:local_b"),
                            (b, "_chat:local_b", "_chat:local_a")):
        for ident in ("chat:from_a", "chat:end_a", "chat:from_b", "chat:end_b", mine):
            assert w.count(ident) == 1, (w.name, ident, w.seen)
        assert w.count(theirs) == 0, (w.name, w.seen)
    assert next(e for e in b.seen if e["event"] == "chat:from_a")["args"] == [1]
    b.call("close", addr=addr)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_cycle_of_three_delivers_once(workers: Any, scheme: str) -> None:
    nodes = workers(3)
    addrs = [w.call("serve", addr=_url(scheme)) for w in nodes]
    for w in nodes:
        w.call("follow", pattern="ring:*")
    for i, w in enumerate(nodes):  # 0->1, 1->2, 2->0
        w.call("interconnect", addr=addrs[(i + 1) % 3])
    nodes[0].call("twitter", id="ring:x", args=["once"])
    nodes[1].call("twitter", id="ring:y")
    for w in nodes:
        w.wait_for("ring:x")
        w.wait_for("ring:y")
    for w in nodes:
        w.quiet()
        assert w.count("ring:x") == 1 and w.count("ring:y") == 1, (w.name, w.seen)


def test_missing_plugin_scheme_named(workers: Any) -> None:
    (w,) = workers(1)
    with pytest.raises(WorkerError, match=r"PluginNotAvailable.*(plugin|install)"):
        w.call("serve", addr="nosuch://127.0.0.1:0")


# -- clients in other languages --------------------------------------------------------------

NODE_CLIENT = r'''
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
      identifier: "bb:node", args: [call.name, "ünï"], kwargs: {n: 1}}, id: 2}));
  }
  sock.end();
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
'''


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_js_client(node: Served, tmp_path: Path) -> None:
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT)
    out = subprocess.run(["node", str(script), str(node.addr("tcp")[1]),
                          str(node.addr("http")[1])], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"jsonrpc": "2.0", "result": "ok", "id": 2}] * 2
    printed = node.printed('"httpCall"')
    assert any('"tcpCall"' in line for line in printed), printed
    assert "ünï" in printed[-1]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_client(node: Served) -> None:
    url = node.urls["http"] + "/"
    out = subprocess.run(["curl", "-sS", "-H", "Content-Type: application/json", "--data",
                          json.dumps(rq("connect_oneway", {"ttl": 60}, 1)), url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert TOKEN_RE.match(json.loads(out.stdout)["result"])
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                          "Content-Type: application/json", "--data",
                          json.dumps(rq("no_such", None, ...)), url],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "204"


# -- the command line as a new user ----------------------------------------------------------


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BERRYMQ, *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_cli_listen_and_send(node: Served, scheme: str) -> None:
    url = node.urls[scheme]
    listen = subprocess.Popen([*BERRYMQ, "listen", url, "cli:*"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert listen.stderr is not None and listen.stdout is not None
        ready = listen.stderr.readline()  # "listening to cli:* at URL"
        assert "cli:*" in ready, ready
        other = node.urls["http" if scheme == "tcp" else "tcp"]
        r = _cli("send", other, "cli:one", "3", "true", "[1,2]", '"3"', '{"a":null}', "plain",
                 "--kw", "user=bob", "--kw", "n=3")
        assert r.returncode == 0, r.stderr
        r = _cli("send", url, "cli:two")
        assert r.returncode == 0, r.stderr
        r = _cli("send", url, "other:no")
        assert r.returncode == 0, r.stderr
        r = _cli("send", url, "cli:three", "x y")
        assert r.returncode == 0, r.stderr
        lines = [listen.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("cli:one ")
        one = lines[0][len("cli:one "):]
        dec = json.JSONDecoder()
        args, end = dec.raw_decode(one)
        kwargs, _ = dec.raw_decode(one[end:].lstrip())
        assert args == [3, True, [1, 2], "3", {"a": None}, "plain"]
        assert kwargs == {"user": "bob", "n": 3}
        assert lines[1].split()[0] == "cli:two"
        assert lines[2].startswith("cli:three ") and '"x y"' in lines[2]
    finally:
        listen.send_signal(signal.SIGINT)
        try:
            rc = listen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            listen.kill()
            listen.wait()
            raise AssertionError("listen did not stop on Ctrl-C") from None
    assert rc == 0
    rest = listen.stderr.read() if listen.stderr else ""
    for pipe in (listen.stdout, listen.stderr):
        if pipe is not None:
            pipe.close()
    assert "Traceback" not in rest, rest


def test_cli_clear_errors() -> None:
    port = _free_port()
    cases = [  # exit status 1: the run failed; 2: a usage error, nothing was tried
        (1, "send", f"tcp://127.0.0.1:{port}", "a:b"),
        (1, "send", f"http://127.0.0.1:{port}", "a:b"),
        (1, "listen", f"tcp://127.0.0.1:{port}", "a:*", "--no-reconnect"),
        (2, "send", f"tcp://127.0.0.1:{port}", "te*:x"),
        (2, "send", f"tcp://127.0.0.1:{port}", "_local:x"),
        (2, "send", f"nosuch://127.0.0.1:{port}", "a:b"),
        (2, "send", f"127.0.0.1:{port}", "a:b"),
    ]
    for status, *args in cases:
        r = _cli(*args)
        assert r.returncode == status, (args, r)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("berrymq: error:"), (args, r.stderr)
        assert r.stdout == ""


def test_cli_serve_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli("serve", "--tcp", f"127.0.0.1:{port}", "--http", "127.0.0.1:0")
    assert r.returncode == 1, r  # the run failed (the command line was right)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("berrymq: error:"), r.stderr


def test_cli_serve_ctrl_c_and_sigterm_exit_0() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        served = Served()
        served.proc.send_signal(sig)
        rc, err = served.stop(signal_it=False)
        assert rc == 0, (sig, err)
        assert "Traceback" not in err


def test_cli_serve_second_signal_still_clean() -> None:
    served = Served()
    served.proc.send_signal(signal.SIGTERM)
    served.proc.send_signal(signal.SIGINT)
    rc, err = served.stop(signal_it=False)
    assert rc == 0 and "Traceback" not in err, (rc, err)



@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_interconnected_peer_sigkilled_mid_stream(workers: Any, scheme: str) -> None:
    a, b, c = workers(3)
    addr = a.call("serve", addr=_url(scheme))
    if scheme == "http":
        b.call("serve", addr=_url(scheme))
    a.call("follow", pattern="kill:*")
    b.call("interconnect", addr=addr)
    b.call("follow", pattern="kill:*")
    c.call("queue", addr=addr, pattern="kill:*")
    b.call("twitter", id="kill:x", args=[0])
    assert b.proc.stdin is not None  # then a stream b is still sending when it is killed
    b.proc.stdin.write("".join(json.dumps({"op": "twitter", "id": "kill:x", "args": [i]}) + "\n"
                               for i in range(1, 2000)))
    b.proc.stdin.flush()
    a.wait_for("kill:x")
    os.kill(b.proc.pid, signal.SIGKILL)
    b.proc.wait(timeout=10)
    # a keeps working: its own twitter returns, others still get messages
    t0 = time.monotonic()
    for i in range(5):
        a.call("twitter", id="kill:after", args=[i])
    assert time.monotonic() - t0 < 5
    got = [c.call("get", timeout=10)[0] for _ in range(3)]
    assert got[0] == "kill:x"
    deadline = time.monotonic() + 15
    while "kill:after" not in got:
        assert time.monotonic() < deadline
        got.append(c.call("get", timeout=10)[0])
    c.call("close")


def test_raw_tcp_interconnect_both_ways_on_one_connection(node: Served) -> None:
    """Style 01 by hand over one TCP line connection, as docs/protocol.md describes it."""
    mine = "c" * 43
    conn = Line(node.addr("tcp"))
    q = Line(node.addr("tcp"))
    sender = Line(node.addr("tcp"))
    try:
        queue_tok = q.call(rq("connect_via_queue", {"identifier": "ic:*", "ttl": 60}, 1))["result"]
        conn.send(rq("interconnect", {"addr": None, "token": mine, "ttl": 60}, "ic"))
        server_tok = None
        while server_tok is None:  # a response, maybe after requests of the node
            msg = conn.recv()
            assert "method" not in msg, msg
            server_tok = msg["result"]
        # client -> node, on the interconnection: the node's other sessions get it
        assert conn.call(rq("send_message", {"token": server_tok, "identifier": "ic:up",
                                             "args": [1]}, "s"))["result"] == "ok"
        assert q.call(rq("get", {"token": queue_tok, "timeout": 5}, 2))["result"] == \
            ["ic:up", [1], {}]
        # node -> client, on the same connection: a send_messages request carrying our token
        other = sender.call(rq("connect_oneway", None, 1))["result"]
        assert sender.call(rq("send_message", {"token": other, "identifier": "ic:down",
                                               "args": ["hi"]}, 2))["result"] == "ok"
        request = conn.recv()
        assert request["method"] == "send_messages" and "id" in request, request
        params = request["params"]
        assert params["token"] == mine
        ident, args, kwargs, *extras = params["messages"][0]
        assert (ident, args, kwargs) == ("ic:down", ["hi"], {})
        if extras:
            assert isinstance(extras[0].get("uid"), str)
        assert [m[0] for m in params["messages"]] == ["ic:down"]  # ic:up is not sent back
        conn.send({"jsonrpc": "2.0", "result": "ok", "id": request["id"]})
        assert conn.call(rq("close_connection", {"token": server_tok}, "z"))["result"] == "ok"
    finally:
        for c in (conn, q, sender):
            c.close()


def test_queue_full_is_refused_not_dropped(tmp_path: Path) -> None:
    cfg = tmp_path / "berrymq.toml"
    cfg.write_text('[berrymq]\n\n[berrymq.jsonrpc-tcp]\nqueue_size = 2\n\n'
                   '[berrymq.jsonrpc-http]\nqueue_size = 2\n')
    served = Served(env=_env(BERRYMQ_CONFIG=str(cfg)))
    try:
        for scheme in ("tcp", "http"):
            b = Both(served, scheme)
            q = b.call(rq("connect_via_queue", {"identifier": "full:*", "ttl": 60}, 1))["result"]
            tok = b.token()
            msgs = [[f"full:{i}", [i], {}] for i in range(4)]
            err = assert_error(b.call(rq("send_messages", {"token": tok, "messages": msgs}, 2)),
                               -32005, 2)
            assert err["data"] == {"refused": [2, 3], "setting": "queue_size", "limit": 2}
            assert b.call(rq("get_nowait", {"token": q}, 3))["result"][0] == "full:0"
            assert b.call(rq("get_nowait", {"token": q}, 4))["result"][0] == "full:1"
            assert_error(b.call(rq("get_nowait", {"token": q}, 5)), -32002)
            b.call(rq("close_connection", {"token": q}, 6))
            b.close()
    finally:
        rc, err_text = served.stop()
    assert rc == 0, err_text
