"""``berrymq graph URL`` and :func:`berrymq_jsonrpc.graph.fetch`: a node's picture asked
for over JSON-RPC (method ``network``), from minimal nodes and from a real one."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socketserver
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc.graph import fetch
from helpers import Child, Lines, child_env, populate, send_body

import berrymq
from berrymq import Bus, network
from berrymq.cli import main
from berrymq.testing import free_port

WAIT = 10.0


@pytest.fixture
def populated(berrymq_bus: Bus) -> Iterator[dict[str, Any]]:
    with populate() as things:
        yield things


# -- asking a node over JSON-RPC ----------------------------------------------------------------


class _Node:
    """A minimal JSON-RPC node on loopback that answers ``network`` with describe(bus)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.requests: list[dict[str, Any]] = []

    def answer(self, body: bytes) -> bytes:
        request = json.loads(body)
        self.requests.append(request)
        if request.get("method") != "network":
            reply = {"jsonrpc": "2.0", "id": request.get("id"),
                     "error": {"code": -32601, "message": "Method not found"}}
        else:
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": network.describe(self.bus)}
        return json.dumps(reply).encode()


@pytest.fixture
def http_node(populated: dict[str, Any], berrymq_bus: Bus) -> Iterator[tuple[str, _Node]]:
    node = _Node(berrymq_bus)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert self.headers["Content-Type"] == "application/json"
            send_body(self, node.answer(body))

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", node
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@pytest.fixture
def tcp_node(populated: dict[str, Any], berrymq_bus: Bus) -> Iterator[tuple[str, _Node]]:
    node = _Node(berrymq_bus)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            self.wfile.write(node.answer(line) + b"\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}", node
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@pytest.mark.parametrize("node_fixture", ["http_node", "tcp_node"])
def test_fetch_asks_a_node_for_its_description(
    request: pytest.FixtureRequest, node_fixture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BERRYMQ_SECRET", raising=False)
    url, node = request.getfixturevalue(node_fixture)
    description = fetch(url, timeout=WAIT)
    assert description == json.loads(json.dumps(network.describe(node.bus)))
    assert node.requests[0]["method"] == "network" and node.requests[0].get("params", {}) == {}
    fetch(url, timeout=WAIT, secret="s3cret")
    assert node.requests[1]["params"] == {"secret": "s3cret"}


def test_cli_graph_of_a_node(tcp_node: tuple[str, _Node], capsys: pytest.CaptureFixture[str]) -> None:
    url, node = tcp_node
    assert main(["graph", url, "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out == network.to_mermaid(json.loads(json.dumps(network.describe(node.bus))))
    assert main(["graph", url]) == 0
    assert capsys.readouterr().out.startswith("digraph berrymq {")


def test_fetch_errors_are_clear(http_node: tuple[str, _Node]) -> None:
    with pytest.raises(ValueError, match="node address"):
        fetch("ftp://127.0.0.1:1")
    with pytest.raises(ValueError, match="node address"):
        fetch("tcp://127.0.0.1")
    port = free_port()  # nobody listens there
    with pytest.raises(berrymq.TransportError, match="cannot ask"):
        fetch(f"tcp://127.0.0.1:{port}", timeout=WAIT)


def test_cli_graph_reports_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "nonsense"]) == 2
    assert "node address" in capsys.readouterr().err


def test_fetch_reports_a_json_rpc_error() -> None:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = json.loads(self.rfile.readline())
            reply = {"jsonrpc": "2.0", "id": request["id"],
                     "error": {"code": -32007, "message": "Not available"}}
            self.wfile.write(json.dumps(reply).encode() + b"\n")

    server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(berrymq.RemoteError) as info:
            fetch(f"tcp://127.0.0.1:{server.server_address[1]}", timeout=WAIT)
        assert info.value.code == -32007
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@contextlib.contextmanager
def _answering_network(result: object, unparsed: list[bytes] | None = None) -> Iterator[str]:
    """A TCP node on loopback that answers every request with ``result`` (and keeps in
    ``unparsed`` each line that is no request, unanswered)."""
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:  # until the client closes
                try:
                    request = json.loads(line)
                except ValueError:  # not a request: not this fake's business
                    if unparsed is not None:
                        unparsed.append(line)
                    continue
                reply = {"jsonrpc": "2.0", "id": request["id"], "result": result}
                self.wfile.write(json.dumps(reply).encode() + b"\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


_RECEIVER = {"id": "r0", "kind": "function", "name": "f",
             "follows": [{"pattern": "a:b", "guard": None}]}


@pytest.mark.parametrize(("description", "named"), [
    ({"version": 1, "receivers": "x"}, "receivers is 'x', not a list"),
    ({"version": 1, "node": "n", "bus": "b", "receivers": [{"id": "r0"}], "senders": 5,
      "connections": [None], "forwarders": "x", "transports": [1]}, "forwarders is 'x'"),
    ({"senders": 5}, "senders is 5, not a list"),
    ({"receivers": [None]}, "receivers[0] is None, not an object"),
    ({"receivers": [{"name": "f"}]}, "receivers[0] has no 'id'"),
    ({"receivers": [dict(_RECEIVER, id=7)]}, "receivers[0].id is 7"),
    ({"receivers": [dict(_RECEIVER, follows=[{"guard": None}])]},
     "receivers[0].follows[0] has no 'pattern'"),
    ({"receivers": [dict(_RECEIVER, follows=[{"pattern": ["a:b"]}])]},
     "receivers[0].follows[0].pattern is ['a:b']"),
    ({"receivers": [dict(_RECEIVER, follows="a:b")]}, "receivers[0].follows is 'a:b'"),
    ({"senders": [{"id": "s0", "sends": 5}]}, "senders[0].sends is 5"),
    ({"senders": [{"id": "s0", "sends": [5]}]}, "senders[0].sends[0] is 5, not a string"),
    ({"connections": [{"id": "c0"}]}, "connections[0] has no 'address'"),
    ({"transports": [{"scheme": "tcp"}]}, "transports[0] has no 'status'"),
    ({"transports": [1]}, "transports[0] is 1, not an object"),
    (["not", "a", "dict"], "answered the network request with ['not'"),
])
def test_a_malformed_description_is_a_transport_error_naming_the_field(
        description: object, named: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``network`` answer of the wrong shape was drawn until a renderer failed with an
    AttributeError or TypeError (a traceback from ``berrymq graph URL``); it is a
    TransportError naming the address and what is wrong, and the command's one error line
    (exit 1). The command does not probe the port for the other protocol (as for a node
    it cannot reach): what answered a JSON-RPC request speaks it, and the probe of a peer
    that ignores it cost a second."""
    unparsed: list[bytes] = []
    with _answering_network(description, unparsed) as url:
        with pytest.raises(berrymq.TransportError) as info:
            fetch(url, timeout=WAIT)
        assert url in str(info.value) and named in str(info.value)
        for fmt in ("dot", "mermaid"):
            assert main(["graph", url, "--format", fmt]) == 1
            err = capsys.readouterr().err
            assert named in err and len(err.strip().splitlines()) == 1, err
    assert unparsed == [], unparsed  # (the probe's GET line)


def test_a_minimal_description_from_a_node_is_drawn() -> None:
    """Fields the renderers have defaults for may be missing from an answer."""
    with _answering_network({"receivers": [_RECEIVER]}) as url:
        description = fetch(url, timeout=WAIT)
    assert "r0" in network.to_dot(description) and "r0" in network.to_mermaid(description)


# -- berrymq graph URL: a real node in another process -------------------------------------


SERVE_NODE = textwrap.dedent(
    """
    import sys
    import berrymq

    @berrymq.following_function("order:*")
    def on_order(message):
        pass

    queue = berrymq.Queue("audit:*")
    url = berrymq.init_connection(sys.argv[1] + "://127.0.0.1:0")
    print("READY", url, flush=True)
    sys.stdin.readline()
    """
)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_berrymq_graph_of_a_running_node(scheme: str, tmp_path: Path) -> None:
    script = tmp_path / "serve_node.py"
    script.write_text(SERVE_NODE)
    child = Child(script, scheme, cwd=tmp_path)
    try:
        dot_run = subprocess.run([sys.executable, "-m", "berrymq", "graph", child.url], capture_output=True,
                                 text=True, timeout=30, cwd=tmp_path, env=child_env())
        assert dot_run.returncode == 0, dot_run.stderr
        assert "order:*" in dot_run.stdout and "audit:*" in dot_run.stdout
        assert "on_order" in dot_run.stdout
        mermaid = subprocess.run([sys.executable, "-m", "berrymq", "graph", child.url, "--format", "mermaid"],
                                 capture_output=True, text=True, timeout=30, cwd=tmp_path,
                                 env=child_env())
        assert mermaid.returncode == 0, mermaid.stderr
        assert mermaid.stdout.lstrip().startswith(("flowchart", "graph"))
        assert '(["order:*"])' in mermaid.stdout and "Queue(audit:*)" in mermaid.stdout
        if shutil.which("dot"):
            rendered = subprocess.run(["dot", "-Tsvg"], input=dot_run.stdout, text=True,
                                      capture_output=True, timeout=30)
            assert rendered.returncode == 0 and "<svg" in rendered.stdout, rendered.stderr
    finally:
        child.stop()


def test_berrymq_graph_serve_command_and_dead_node(tmp_path: Path) -> None:
    """`berrymq serve` on free ports, drawn by `berrymq graph`; a node gone away is exit 1."""
    serve = Lines([sys.executable, "-m", "berrymq", "serve", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                  tmp_path, deadline=20, env=child_env())
    try:
        urls: list[str] = []
        while len(urls) < 2:  # each line within the deadline, or the test fails
            urls += [w.rstrip(".,;") for w in serve.line().split()
                     if w.startswith(("tcp://", "http://"))]
        for url in urls:
            out = subprocess.run([sys.executable, "-m", "berrymq", "graph", url, "--format", "mermaid"],
                                 capture_output=True, text=True, timeout=30, env=child_env())
            assert out.returncode == 0, out.stderr
    finally:
        serve.close()
    dead = subprocess.run([sys.executable, "-m", "berrymq", "graph", urls[0], "--timeout", "2"],
                          capture_output=True, text=True, timeout=30, env=child_env())
    assert dead.returncode == 1  # the node went away: a failed run, not a usage error
    assert dead.stderr.strip() and "Traceback" not in dead.stderr


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_peer_that_interconnected_to_the_node_is_in_its_picture(
        scheme: str, bus_factory: Any) -> None:
    """Each side of an interconnect shows the other: the node it was made to shows the
    peer as a connection that came in (it showed only the connections it made, while
    saying it forwarded to that peer)."""
    node, peer = bus_factory(), bus_factory()
    url = node.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    if scheme == "http":  # over HTTP the node calls the peer's server back
        peer.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    with berrymq.use_bus(peer):
        berrymq.interconnect(url)
    [made] = network.describe(peer)["connections"]
    assert (made["address"], made["style"], made["direction"]) == (url, "interconnect", "out")
    [came] = network.describe(node)["connections"]
    assert (came["style"], came["direction"]) == ("interconnect", "in")
    assert came["address"].startswith(f"{scheme}://127.0.0.1:")
    assert 'label="interconnect (from it)"' in network.to_dot(network.describe(node))
