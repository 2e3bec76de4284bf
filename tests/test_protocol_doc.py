"""docs/protocol.md tells the truth: every example block marked ``% example:`` is replayed
against a real node (in-process, real sockets on loopback) over TCP and over HTTP, and the
node must answer exactly what the page shows. Tokens and message uids differ per run: a
43-character token in a reply binds the page's token to the real one, which later requests
then use; a ``uid`` matches any string.

Also checked: the error table against ``berrymq_jsonrpc.protocol``, every method has its
section, the size limit and the HTTP form of style 01 behave as the page says.
"""

from __future__ import annotations

import http.client
import http.server
import itertools
import json
import queue
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc import protocol
from helpers import send_body

from berrymq.api import init_connection, regist_function
from berrymq.bus import Bus
from berrymq.default import use_bus
from berrymq.plugins import PluginHost

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
TIMEOUT = 15.0
SECRET = "correct horse"


@dataclass
class Example:
    options: set[str]
    language: str
    lines: list[str]
    line_number: int


def examples() -> list[Example]:
    found = []
    lines = DOC.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^% example: (.+)$", line)
        if not match:
            continue
        fence = lines[number + 1]
        assert fence.startswith("```"), f"protocol.md:{number + 1}: no fence after the marker"
        end = lines.index("```", number + 2)
        found.append(Example(set(match.group(1).split()), fence[3:].strip(),
                             lines[number + 2:end], number + 1))
    return found


def exchanges(example: Example) -> list[tuple[str, str]]:
    result = []
    for line in example.lines:
        direction, _, text = line.partition(" ")
        assert direction in ("-->", "<--"), f"protocol.md:{example.line_number}: {line!r}"
        result.append((direction, text))
    return result


@dataclass
class Bindings:
    """The page's tokens -> the real ones of this run."""

    tokens: dict[str, str] = field(default_factory=dict)

    def substitute(self, text: str) -> str:
        for written, real in self.tokens.items():
            text = text.replace(written, real)
        return text

    def match(self, written: Any, actual: Any, key: str = "") -> bool:
        if key == "uid":
            return isinstance(written, str) and isinstance(actual, str)
        if isinstance(written, str) and TOKEN.match(written) and isinstance(actual, str):
            if written in self.tokens:
                return self.tokens[written] == actual
            if TOKEN.match(actual):
                self.tokens[written] = actual
                return True
            return False
        if isinstance(written, dict):
            return (isinstance(actual, dict) and written.keys() == actual.keys()
                    and all(self.match(written[k], actual[k], k) for k in written))
        if isinstance(written, list):
            return (isinstance(actual, list) and len(written) == len(actual)
                    and all(self.match(w, a) for w, a in zip(written, actual, strict=True)))
        return type(written) is type(actual) and written == actual

    def match_all(self, written: list[str], actual: list[str]) -> bool:
        """Lines that may come in any order (TCP: a response and the node's request)."""
        expected = [json.loads(w) for w in written]
        got = [json.loads(a) for a in actual]
        for order in itertools.permutations(range(len(got))):
            trial = Bindings(dict(self.tokens))
            if all(trial.match(e, got[i]) for e, i in zip(expected, order, strict=True)):
                self.tokens = trial.tokens
                return True
        return False


# -- the nodes --------------------------------------------------------------------------------


@pytest.fixture
def node(berrymq_plugin_host: PluginHost) -> Iterator[dict[str, str]]:
    """A node as the page describes it: a receiver of price:quote returning 9.5 * args[0]."""
    bus = Bus(plugins=berrymq_plugin_host, name="doc")
    with use_bus(bus):
        regist_function("price:quote", lambda m: 9.5 * m.args[0], weak=False)
        urls = {"tcp": str(init_connection("tcp://127.0.0.1:0")),
                "http": str(init_connection("http://127.0.0.1:0"))}
    yield urls
    bus.close()


@pytest.fixture
def secret_node(berrymq_plugin_host: PluginHost,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A node started with BERRYMQ_SECRET set."""
    monkeypatch.setenv(protocol.SECRET_ENV_VAR, SECRET)
    bus = Bus(plugins=berrymq_plugin_host, name="doc-secret")
    with use_bus(bus):
        urls = {"tcp": str(init_connection("tcp://127.0.0.1:0")),
                "http": str(init_connection("http://127.0.0.1:0"))}
    yield urls
    bus.close()


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[1].rstrip("/").rpartition(":")
    return host, int(port)


# -- replaying the examples -------------------------------------------------------------------


class TcpClient:
    def __init__(self, url: str) -> None:
        self.sock = socket.create_connection(host_port(url), timeout=TIMEOUT)
        self.file = self.sock.makefile("rwb")

    def send(self, text: str) -> None:
        self.file.write(text.encode() + b"\n")
        self.file.flush()

    def read(self) -> str:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"the node closed the connection (read {line!r})"
        return line.decode()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def replay_tcp(blocks: list[Example], url: str) -> None:
    client = TcpClient(url)
    bindings = Bindings()
    try:
        for example in blocks:
            steps = exchanges(example)
            i = 0
            while i < len(steps):
                direction, text = steps[i]
                if direction == "-->":
                    client.send(bindings.substitute(text))
                    i += 1
                    continue
                group = list(itertools.takewhile(lambda s: s[0] == "<--", steps[i:]))
                actual = [client.read() for _ in group]
                written = [t for _, t in group]
                assert bindings.match_all(written, actual), (
                    f"protocol.md:{example.line_number}: the page shows\n"
                    + "\n".join(written) + "\nthe node sent\n" + "".join(actual))
                i += len(group)
        # Nothing else came (notifications were not answered): the next line is the
        # answer to this request.
        client.send('{"jsonrpc":"2.0","method":"no_such_method","id":"last"}')
        assert json.loads(client.read())["id"] == "last"
    finally:
        client.close()


def replay_http(blocks: list[Example], url: str) -> None:
    connection = http.client.HTTPConnection(*host_port(url), timeout=TIMEOUT)
    bindings = Bindings()
    try:
        for example in blocks:
            steps = exchanges(example)
            for i, (direction, text) in enumerate(steps):
                if direction != "-->":
                    continue
                following = list(itertools.takewhile(lambda s: s[0] == "<--", steps[i + 1:]))
                assert len(following) <= 1, f"protocol.md:{example.line_number}: HTTP gives one body"
                connection.request("POST", "/", bindings.substitute(text).encode(),
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                body = response.read().decode()
                where = f"protocol.md:{example.line_number}: {text}"
                if not following:
                    assert (response.status, body) == (204, ""), f"{where}: {response.status} {body}"
                    continue
                assert response.status == 200, f"{where}: {response.status} {body}"
                assert bindings.match_all([following[0][1]], [body]), (
                    f"{where}\nthe page shows {following[0][1]}\nthe node sent  {body}")
    finally:
        connection.close()


def chosen(transport: str, *, secret: bool) -> list[Example]:
    return [e for e in examples()
            if transport in e.options and ("secret" in e.options) == secret]


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_examples_replay(transport: str, node: dict[str, str]) -> None:
    blocks = chosen(transport, secret=False)
    assert len(blocks) >= 8
    (replay_tcp if transport == "tcp" else replay_http)(blocks, node[transport])


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_secret_examples_replay(transport: str, secret_node: dict[str, str]) -> None:
    blocks = chosen(transport, secret=True)
    assert blocks
    (replay_tcp if transport == "tcp" else replay_http)(blocks, secret_node[transport])


def parse_http(lines: list[str]) -> tuple[str, dict[str, str], str]:
    blank = lines.index("")
    head = lines[0]
    headers = {}
    for line in lines[1:blank]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return head, headers, "\n".join(lines[blank + 1:])


def test_raw_http_examples(node: dict[str, str]) -> None:
    blocks = [e for e in examples() if e.options & {"http-request", "http-response"}]
    assert [sorted(b.options)[0] for b in blocks] == ["http-request", "http-response"] * 2
    bindings = Bindings()
    sock = socket.create_connection(host_port(node["http"]), timeout=TIMEOUT)
    reader = sock.makefile("rb")
    try:
        for request, response in zip(blocks[::2], blocks[1::2], strict=True):
            _, headers, body = parse_http(request.lines)
            assert int(headers["content-length"]) == len(body.encode()), (
                f"protocol.md:{request.line_number}: Content-Length is not the body's length")
            body = bindings.substitute(body)
            raw = "\r\n".join(request.lines[:request.lines.index("")]) + "\r\n\r\n" + body
            sock.sendall(raw.encode())

            want_status, want_headers, want_body = parse_http(response.lines)
            status = reader.readline().decode().rstrip("\r\n")
            got_headers = {}
            while (line := reader.readline().decode().rstrip("\r\n")) != "":
                name, _, value = line.partition(":")
                got_headers[name.strip().lower()] = value.strip()
            got_body = reader.read(int(got_headers.get("content-length", "0"))).decode()
            assert status == want_status
            assert got_headers == want_headers, f"protocol.md:{response.line_number}"
            if want_body.strip():
                assert bindings.match_all([want_body], [got_body]), got_body
            else:
                assert got_body == ""
    finally:
        reader.close()
        sock.close()


# -- the rest of the page ---------------------------------------------------------------------


def test_error_table_is_the_protocol() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (-32\d\d\d) \| ([^|]+?) \|", text, re.M))
    standard = {"-32700": "Parse error", "-32600": "Invalid Request",
                "-32601": "Method not found", "-32602": "Invalid params",
                "-32603": "Internal error"}
    application = {str(code): message for code, message in protocol.APPLICATION_ERRORS.items()}
    assert rows == standard | application


def test_every_method_has_a_section() -> None:
    text = DOC.read_text(encoding="utf-8")
    for method in protocol.METHODS:
        assert re.search(rf"^### {method}$", text, re.M), f"no section for {method}"


def test_each_methods_table_lists_its_positional_params_in_order() -> None:
    """The page says params by position follow each method's table: the names in the
    first column, in order, are the ones the node takes by position (a table listed seven
    for ``send_message`` and ``ask`` where the node took four)."""
    text = DOC.read_text(encoding="utf-8")
    for method in protocol.METHODS:
        section = text.split(f"\n### {method}\n", 1)[1].split("\n#", 1)[0]
        rows = re.findall(r"^\| ([^|]+) \|", section.split("|---", 1)[1], re.M)
        names = tuple(name for row in rows for name in re.findall(r"`(\w+)`", row))
        assert names == protocol.POSITIONAL_PARAMS[method], method


def test_documented_defaults_are_the_protocol() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert protocol.DEFAULT_MAX_SIZE == 1_048_576 and "1 048 576 bytes" in text
    assert f"{protocol.DEFAULT_QUEUE_SIZE:,}".replace(",", " ") + " messages" in text
    assert f"| {protocol.DEFAULT_MAX_GET_WAIT:g} s | `max_get_wait`" in text
    assert f"| {protocol.DEFAULT_READ_TIMEOUT:g} s | `read_timeout`" in text
    assert f"{protocol.TOKEN_BYTES * 8} random bits" in text
    assert f"`{protocol.PARAM_SECRET}`" in text and protocol.SECRET_ENV_VAR in text


def test_too_large_as_documented(node: dict[str, str]) -> None:
    params = {"token": "x" * 43, "identifier": "x:y", "args": ["a" * protocol.DEFAULT_MAX_SIZE]}
    text = json.dumps({"jsonrpc": "2.0", "method": "send_message", "params": params, "id": 20})
    expected = {"jsonrpc": "2.0", "error": {"code": protocol.TOO_LARGE,
                "message": "Message too large", "data": {"limit": protocol.DEFAULT_MAX_SIZE,
                                                        "setting": "max_size"}},
                "id": None}
    client = TcpClient(node["tcp"])
    try:
        client.send(text)
        assert json.loads(client.read()) == expected
        assert client.file.readline() == b""  # then the node closed the connection
    finally:
        client.close()
    connection = http.client.HTTPConnection(*host_port(node["http"]), timeout=TIMEOUT)
    try:
        connection.request("POST", "/", text.encode(), {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read()) == expected
    finally:
        connection.close()


class _ClientServer(http.server.BaseHTTPRequestHandler):
    """The client's own HTTP server of style 01 over HTTP: answers "ok" to send_messages
    that carry the client's token and queues what it got."""

    received: queue.SimpleQueue[Any]

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.put((self.headers["Content-Type"], request))
        ok = request["params"].get("token") == "client-token-of-32-random-bytes"
        reply = ({"jsonrpc": "2.0", "result": "ok", "id": request["id"]} if ok else
                 {"jsonrpc": "2.0", "error": {"code": -32001,
                  "message": "Unknown or expired token"}, "id": request["id"]})
        send_body(self, json.dumps(reply).encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_style01_over_http_as_documented(node: dict[str, str]) -> None:
    received: queue.SimpleQueue[Any] = queue.SimpleQueue()
    handler = type("Handler", (_ClientServer,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    own = f"http://127.0.0.1:{server.server_address[1]}"
    connection = http.client.HTTPConnection(*host_port(node["http"]), timeout=TIMEOUT)

    def call(method: str, params: dict[str, Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
        connection.request("POST", "/", body, {"Content-Type": "application/json"})
        return json.loads(connection.getresponse().read())["result"]

    try:
        token = call("interconnect", {"addr": own, "token": "client-token-of-32-random-bytes",
                                      "ttl": 60})
        assert TOKEN.match(token)
        oneway = call("connect_oneway", {"ttl": 60})
        assert call("send_message", {"token": token, "identifier": "chat:hello"}) == "ok"
        assert call("send_message", {"token": oneway, "identifier": "news:flash",
                                     "args": ["hi"]}) == "ok"
        content_type, request = received.get(timeout=TIMEOUT)
        assert content_type == "application/json"
        assert request["method"] == "send_messages"
        assert request["params"]["token"] == "client-token-of-32-random-bytes"
        [message] = request["params"]["messages"]  # chat:hello was not sent back
        assert message[:3] == ["news:flash", ["hi"], {}]
        assert isinstance(message[3]["uid"], str)
        assert call("close_connection", {"token": token}) == "ok"
    finally:
        connection.close()
        server.shutdown()
        server.server_close()
