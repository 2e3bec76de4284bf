"""The three connection styles, talk, ask and cycles between real processes, over TCP
and HTTP. The test process is one node (its default bus is the test's ``berrymq_bus``);
the others run tests/remote/node_script.py."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from berrymq_jsonrpc.connection import ServerQueue
from helpers import interrupted_at_exit
from helpers import serve as serving

import berrymq
from berrymq.bus import Bus
from berrymq.testing import free_port

SCHEMES = ["tcp", "http"]
LOCAL = "tcp://127.0.0.1:0"


def serve(scheme: str) -> str:
    addr = berrymq.init_connection(f"{scheme}://127.0.0.1:0")
    assert isinstance(addr, str)
    return addr


def flush(bus: Bus) -> None:
    for transport in list(bus.transports().values()):
        transport.flush(10)  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_init_connection_returns_the_bound_address_in_the_form_given(
        berrymq_bus: Bus, scheme: str) -> None:
    url = berrymq.init_connection(f"{scheme}://127.0.0.1:0")
    assert isinstance(url, str) and url.startswith(f"{scheme}://127.0.0.1:")
    assert int(url.rsplit(":", 1)[1]) > 0
    if scheme == "http":
        host, port = berrymq.init_connection(("localhost", 0))  # type: ignore[misc]
        assert host == "localhost" and isinstance(port, int) and port > 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_style01_interconnect_forwards_both_ways_and_keeps_local_names(
        berrymq_bus: Bus, spawn: Callable[..., Any], scheme: str) -> None:
    if scheme == "http":
        serve(scheme)  # over HTTP the peer calls this node's server back
    node = spawn()
    peer = node("serve", addr=f"{scheme}://127.0.0.1:0")
    node("echo", pattern="ping:*", reply="pong:back")
    node("echo", pattern="ping:*", reply="_private:back")
    node("collect", pattern="hello:*")
    pongs = berrymq.Queue("pong:*")
    private = berrymq.Queue("_private:*")
    connection = berrymq.interconnect(peer)
    assert connection.style == "interconnect"
    berrymq.twitter("ping:go", 1, "two", three=[3])
    message = pongs.get(timeout=10)
    assert (message.id, message.args, message.kwargs) == ("pong:back", (1, "two"), {"three": [3]})
    berrymq.twitter("_local:x", 1)  # never leaves
    berrymq.twitter("hello:there", "from test")
    flush(berrymq_bus)
    assert node("drain", pattern="hello:*", wait=10, until="hello:there") == [
        ["hello:there", ["from test"], {}]]
    node("twitter", id="hello:back")
    node("flush")
    assert private.empty()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_style01_between_two_subprocesses(spawn: Callable[..., Any], scheme: str) -> None:
    a, b = spawn(), spawn()
    a_addr = a("serve", addr=f"{scheme}://127.0.0.1:0")
    b_addr = b("serve", addr=f"{scheme}://127.0.0.1:0")
    assert a_addr != b_addr
    a("collect", pattern="*:*")
    b("collect", pattern="*:*")
    a("interconnect", addr=b_addr)
    a("twitter", id="from:a", args=[1])
    b("twitter", id="from:b", args=[2])
    a("twitter", id="_hidden:a")
    a("twitter", id="end:a")
    got = b("drain", pattern="*:*", wait=10, until="end:a")
    # b's own message was stored before end:a was sent; a's arrive in order, without
    # the local one
    assert ["from:b", [2], {}] in got
    assert [m for m in got if m[0] != "from:b"] == [["from:a", [1], {}], ["end:a", [], {}]]
    b("twitter", id="end:b")
    got = a("drain", pattern="*:*", wait=10, until="end:b")
    assert [m[0] for m in got if m[0] != "from:b"] == ["from:a", "_hidden:a", "end:a", "end:b"]
    assert ["from:b", [2], {}] in got


@pytest.mark.parametrize("scheme", SCHEMES)
def test_style02_oneway_send_message(berrymq_bus: Bus, spawn: Callable[..., Any],
                                     scheme: str) -> None:
    addr = serve(scheme)
    received = berrymq.Queue("log:*")
    node = spawn()
    node("oneway", addr=addr)
    for i in range(0, 200, 50):
        node("send", id="log:line", args=[i], kwargs={"n": i})
    node("close")
    got = [received.get(timeout=10) for _ in range(4)]
    assert [(m.id, m.args, m.kwargs) for m in got] == [
        ("log:line", (i,), {"n": i}) for i in range(0, 200, 50)]
    # and the other way round: the test process sends to a node
    node2 = spawn()
    addr2 = node2("serve", addr=f"{scheme}://127.0.0.1:0")
    node2("collect", pattern="log:*")
    berrymq.connect_oneway(addr2)
    for i in range(1000):
        berrymq.send_message("log:many", i)
    with pytest.raises(ValueError, match="local"):
        berrymq.send_message("_log:many", 1)
    berrymq.close_connection(addr2)  # sends what is queued first
    got2 = node2("drain", pattern="log:*")
    assert [m[1][0] for m in got2] == list(range(1000))
    with pytest.raises(berrymq.ConnectionClosed):
        berrymq.send_message("log:many", 1)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_style03_connect_via_queue(berrymq_bus: Bus, spawn: Callable[..., Any],
                                   scheme: str) -> None:
    node = spawn()
    addr = node("serve", addr=f"{scheme}://127.0.0.1:0")
    connection = berrymq.connect_via_queue(addr, "*:*")
    assert connection.style == "queue"
    with pytest.raises(berrymq.Empty):
        berrymq.get_nowait()
    with pytest.raises(berrymq.Empty):
        berrymq.get(timeout=0.2)
    node("twitter", id="_secret:x", args=[0])  # local: never reaches the client
    node("twitter", id="job:one", args=[1], kwargs={"k": "v"})
    node("twitter", id="job:two", args=[2])
    first = berrymq.get(timeout=10)
    assert (first.id, first.args, first.kwargs) == ("job:one", (1,), {"k": "v"})
    assert berrymq.get_nowait().args == (2,)
    # a client of style 03 can also send to the node
    node("collect", pattern="up:*")
    berrymq.send_message("up:stream", "hi")
    connection.flush(10)  # type: ignore[attr-defined]
    assert node("drain", pattern="up:*") == [["up:stream", ["hi"], {}]]
    # the client's queue follows *:* on the node, so it sees that message too
    assert berrymq.get(timeout=10).id == "up:stream"
    node("twitter", id="job:three", args=[3])
    assert berrymq.get().args == (3,)  # a blocking get without timeout
    berrymq.close_connection(addr)
    with pytest.raises(berrymq.ConnectionClosed):
        berrymq.get_nowait()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_session_the_node_forgot_is_named_with_the_node(
        bus_factory: Callable[..., Bus], scheme: str) -> None:
    """A program with several connections can tell which one ended: the text of the
    ConnectionClosed names the node (it said only 'the peer no longer knows this
    connection: Unknown or expired token')."""
    server, port = serving(bus_factory, scheme)
    url = f"{scheme}://127.0.0.1:{port}"
    client = bus_factory()
    with berrymq.use_bus(client):
        connection: Any = berrymq.connect_via_queue(url, "job:*", ttl=60)
    server.transport(scheme).service.close_session(connection.token)  # type: ignore[attr-defined]
    with pytest.raises(berrymq.ConnectionClosed) as closed:
        connection.get_nowait()
    assert str(closed.value) == (
        f"the peer no longer knows this connection to {url}: Unknown or expired token")


@pytest.mark.parametrize(("entry", "error"), [
    ({"identifier": "a:b"}, "must be [identifier, args, kwargs]"),
    (["a:b", {}, {}], "the message args must be an array"),
    (["_own:x", [], {}], "is local"),
])
def test_a_get_result_is_read_in_the_one_wire_form(entry: Any, error: str) -> None:
    peer = SimpleNamespace(address="tcp://peer:1", token="t", call=lambda method, params, **_: entry)
    with pytest.raises(berrymq.TransportError, match=r"^tcp://peer:1 answered get with a "
                                                     r"malformed message: ") as caught:
        ServerQueue(peer).get_nowait()  # type: ignore[arg-type]
    assert error in str(caught.value)
    peer.call = lambda method, params, **_: ["a:b", [1], {"k": 2}]
    got = ServerQueue(peer).get_nowait()  # type: ignore[arg-type]
    assert (got.id, got.args, got.kwargs, got.uid) == ("a:b", (1,), {"k": 2}, None)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_cycle_of_three_delivers_once_per_node(spawn: Callable[..., Any], scheme: str) -> None:
    nodes = [spawn(), spawn(), spawn()]
    addrs = [n("serve", addr=f"{scheme}://127.0.0.1:0") for n in nodes]
    for node in nodes:
        node("collect", pattern="c:*")
    for i, node in enumerate(nodes):  # a -> b, b -> c, c -> a
        node("interconnect", addr=addrs[(i + 1) % 3])
    nodes[0]("twitter", id="c:one", args=[1])
    nodes[1]("twitter", id="c:two", args=[2])
    for _ in range(3):  # every hop of the cycle has been acknowledged
        for node in nodes:
            assert node("flush") is True
    for node in nodes:
        got = node("drain", pattern="c:*")
        assert sorted(m[0] for m in got) == ["c:one", "c:two"], got


@pytest.mark.parametrize("scheme", SCHEMES)
def test_talk_across_processes(berrymq_bus: Bus, spawn: Callable[..., Any], scheme: str) -> None:
    if scheme == "http":
        serve(scheme)
    node = spawn()
    addr = node("serve", addr=f"{scheme}://127.0.0.1:0")
    node("answer", pattern="calc:*")
    callbacks = berrymq.Queue("calc_done:*")
    berrymq.interconnect(addr)
    berrymq.talk("calc:double", "calc_done:result", 21)
    message = callbacks.get(timeout=10)
    assert (message.id, message.args) == ("calc_done:result", (42,))
    # and a node talks to the receivers of the test process
    berrymq.regist_function("square:*", lambda m: m.args[0] ** 2, weak=False)
    node("collect", pattern="squared:*")
    node("talk", id="square:it", cb="squared:done", args=[7])
    node("flush")
    flush(berrymq_bus)
    assert node("drain", pattern="squared:*", wait=10, until="squared:done") == [
        ["squared:done", [49], {}]]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ask_across_processes(berrymq_bus: Bus, spawn: Callable[..., Any], scheme: str) -> None:
    if scheme == "http":
        serve(scheme)
    node = spawn()
    addr = node("serve", addr=f"{scheme}://127.0.0.1:0")
    node("answer", pattern="calc:*")
    berrymq.regist_function("calc:*", lambda m: "local", weak=False)
    berrymq.interconnect(addr)
    assert berrymq.ask("calc:double", 21, timeout=10) == ["local", 42]
    replies = berrymq.ask("calc:double", "boom", timeout=10)
    assert replies[0] == "local"
    assert isinstance(replies[1], berrymq.ReplyError)
    assert replies[1].exception_type == "RuntimeError" and "boom" in replies[1].message
    assert berrymq.ask("nobody:listens", timeout=10) == []
    # the node asks the test process
    assert node("ask", id="calc:double", args=[5], wait=10) == [10, "local"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dead_peer_is_reported_and_does_not_hang_the_sender(
        berrymq_bus: Bus, spawn: Callable[..., Any], scheme: str,
        wait_for: Callable[..., Any]) -> None:
    if scheme == "http":
        serve(scheme)
    doomed, survivor = spawn(), spawn()
    doomed_addr = doomed("serve", addr=f"{scheme}://127.0.0.1:0")
    survivor_addr = survivor("serve", addr=f"{scheme}://127.0.0.1:0")
    survivor("collect", pattern="x:*")
    dead_connection = berrymq.interconnect(doomed_addr)
    berrymq.interconnect(survivor_addr)
    doomed.kill()

    def noticed() -> bool:
        berrymq.twitter("x:probe")  # forwarding never blocks for long
        return bool(dead_connection.closed)  # type: ignore[attr-defined]

    wait_for(noticed, 30, "the dead peer to be noticed")
    assert dead_connection not in berrymq_bus.connections()
    berrymq.twitter("x:last")
    flush(berrymq_bus)
    got = survivor("drain", pattern="x:*")
    assert got[-1] == ["x:last", [], {}]
    connection = berrymq.connect_oneway(survivor_addr)
    berrymq.send_message("x:after")
    connection.flush(10)  # type: ignore[attr-defined]
    with pytest.raises(berrymq.ConnectionClosed):
        dead_connection.send(berrymq.Message("x:y"))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_peer_killed_mid_stream_while_the_server_serves_others(
        berrymq_bus: Bus, spawn: Callable[..., Any], scheme: str,
        wait_for: Callable[..., Any]) -> None:
    addr = serve(scheme)
    streamed = berrymq.Queue("stream:*")
    calm = berrymq.Queue("calm:*")
    killer = spawn()
    killer("oneway", addr=addr)
    killer("stream", id="stream:n")
    first = [streamed.get(timeout=10) for _ in range(100)]
    assert [m.args[0] for m in first] == list(range(100))
    killer.kill()
    other = spawn()
    other("oneway", addr=addr)
    for i in range(3):
        other("send", id="calm:n", args=[i])
    other("close")
    assert [calm.get(timeout=10).args[0] for _ in range(3)] == [0, 1, 2]
    # the killed peer's session outlives its connection (a token is valid from any
    # connection until its ttl expires); the other peer closed its own
    transport = berrymq_bus.transport(scheme)
    wait_for(lambda: len(transport.service.sessions) == 1,  # type: ignore[attr-defined]
             10, "the closed peer's session to go")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_interconnected_peer_killed_mid_stream_leaves_the_node_working(
        berrymq_bus: Bus, spawn: Callable[..., Any], scheme: str) -> None:
    addr = serve(scheme)
    streamed = berrymq.Queue("kill:*")
    killer = spawn()
    if scheme == "http":
        killer("serve", addr=f"{scheme}://127.0.0.1:0")  # this node forwards to it too
    killer("interconnect", addr=addr)
    watcher = spawn()
    watcher("via_queue", addr=addr, pattern="after:*")
    killer("stream", id="kill:n")
    assert [streamed.get(timeout=10).args[0] for _ in range(100)] == list(range(100))
    killer.kill()  # SIGKILL, mid-stream
    # twitter still returns at once, though it forwards to the dead peer, and the node's
    # other sessions are still served
    started = time.monotonic()
    for i in range(5):
        berrymq.twitter("after:n", i)
    assert time.monotonic() - started < 5
    assert [watcher("get", wait=10) for _ in range(5)] == [["after:n", [i], {}] for i in range(5)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_messages_queued_at_exit_are_still_delivered(berrymq_bus: Bus, scheme: str,
                                                     tmp_path: Any) -> None:

    addr = serve(scheme)
    received = berrymq.Queue("bye:*")
    script = (
        "import berrymq, sys\n"
        "berrymq.connect_oneway(sys.argv[1])\n"
        "for i in range(2000):\n"
        "    berrymq.send_message('bye:n', i)\n"
    )  # no close_connection: the program just ends
    subprocess.run([sys.executable, "-c", script, addr], check=True, timeout=60, cwd=tmp_path)
    assert [received.get(timeout=10).args[0] for _ in range(2000)] == list(range(2000))


@pytest.mark.parametrize(("spelled", "closed_by"), [
    ("{url}/", "{url}"), ("{upper}", "{url}"), ("{url}", "{url}/"), (" {url}", "{url}")])
def test_close_connection_finds_the_connection_however_its_address_is_spelled(
        berrymq_bus: Bus, spelled: str, closed_by: str) -> None:
    """connect_* took these spellings of one address, and close_connection compared the
    raw strings: it closed nothing and said nothing, the connection stayed open."""
    server = Bus(name="spelled")
    try:
        url = server.transport("tcp").listen("tcp://127.0.0.1:0")
        names = {"url": url, "upper": url.replace("tcp://", "TCP://")}
        connection = berrymq.connect_oneway(spelled.format(**names))
        berrymq.close_connection(closed_by.format(**names))
        assert connection.closed
        assert berrymq_bus.connections() == []
    finally:
        server.close()


def test_close_connection_takes_localhost_for_the_loopback_address_and_names_a_miss(
        berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """A connection opened to 127.0.0.1 and closed as localhost stayed open, and an
    address that no connection leads to (mistyped) closed nothing without a word."""
    server = Bus(name="loopback")
    try:
        url = server.transport("tcp").listen("tcp://127.0.0.1:0")
        port = url.rsplit(":", 1)[1]
        connection = berrymq.connect_oneway(url)
        with caplog.at_level(logging.WARNING, logger="berrymq"):
            berrymq.close_connection(f"tcp://127.0.0.1:{int(port) + 1}")
        assert not connection.closed
        assert f"no open connection leads there (open: {url})" in caplog.text
        berrymq.close_connection(f"tcp://localhost:{port}")
        assert connection.closed
        assert berrymq_bus.connections() == []
    finally:
        server.close()


def _slow_tcp_peer(delay: float, silent_from: int | None = None
                   ) -> tuple[socket.socket, threading.Thread]:
    """A TCP peer that answers ``connect_oneway`` with a token, then acknowledges each
    batch ``delay`` seconds after it came (a busy node), and none once it has received
    ``silent_from`` messages: its listening socket and its thread."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as lines:
                request = json.loads(lines.readline())
                conn.sendall(json.dumps({"jsonrpc": "2.0", "result": "t" * 43,
                                         "id": request["id"]}).encode() + b"\n")
                received = 0
                while line := lines.readline():
                    request = json.loads(line)
                    received += len(request["params"].get("messages", [None]))
                    if silent_from is not None and received >= silent_from:
                        continue
                    time.sleep(delay)
                    conn.sendall(json.dumps({"jsonrpc": "2.0", "result": "ok",
                                             "id": request["id"]}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


#: Sends 3,000 messages of 1 KB and ends without closing; the line it writes last (its
#: first atexit hook runs last) is the count of its losses.
_ENDS_WITH_A_BACKLOG = """
import atexit, sys
def last():
    lost = stats_for(berrymq.get_bus()).losses()
    print("LOSSES", sum(lost.values()), file=sys.stderr)
atexit.register(last)
import berrymq
from berrymq.stats import stats_for
berrymq.connect_oneway(sys.argv[1])
for i in range(3000):
    berrymq.send_message('bye:n', i, "x" * 1000)
"""


def test_messages_given_up_at_exit_are_logged_with_their_count(tmp_path: Any) -> None:
    """A program that ends while its peer is slow to acknowledge waits ``timeout`` at
    exit, then gives up what is left: the log names every message given up, not only
    the batch on its way (the rest were only counted, in a counter nobody could read)."""
    server, thread = _slow_tcp_peer(0.3)
    (tmp_path / "berrymq.toml").write_text("[berrymq.jsonrpc-tcp]\ntimeout = 1\n")
    url = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        done = subprocess.run([sys.executable, "-c", _ENDS_WITH_A_BACKLOG, url],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    lost = int(re.findall(r"^LOSSES (\d+)$", done.stderr, re.MULTILINE)[-1])
    assert lost > 1000, done.stderr  # most were still waiting
    logged = [int(n) for n in re.findall(r"(\d+) messages (?:on their way|not sent)", done.stderr)]
    assert sum(logged) == lost, done.stderr
    thread.join(10)


def test_ctrl_c_during_the_wait_at_exit_ends_it_and_counts_what_is_left(tmp_path: Any) -> None:
    """A user who presses Ctrl-C while a program waits at exit for a slow peer is not
    shown a traceback from an exit hook ('Exception ignored in atexit callback'): the
    wait ends, and what was not sent is logged with its count, as after a timeout."""
    server, thread = _slow_tcp_peer(0.0, silent_from=3000)  # the last batch: never
    (tmp_path / "berrymq.toml").write_text("[berrymq.jsonrpc-tcp]\ntimeout = 60\n")
    url = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    program = ("import logging\nlogging.basicConfig()\n"
               "logging.getLogger('berrymq.remote').setLevel(logging.DEBUG)\n"
               + _ENDS_WITH_A_BACKLOG)
    try:
        with subprocess.Popen([sys.executable, "-c", program, url], stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path) as child:  # ends well before 60 s
            stderr = interrupted_at_exit(child, "at exit: waiting for 1 connection(s)")
    finally:
        server.close()
    assert "interrupted while waiting at exit for 1 connection(s)" in stderr, stderr
    lost = int(re.findall(r"^LOSSES (\d+)$", stderr, re.MULTILINE)[-1])
    assert lost > 0, stderr  # the last batch, on its way
    logged = [int(n) for n in re.findall(r"(\d+) messages (?:on their way|not sent)", stderr)]
    assert sum(logged) == lost, stderr
    thread.join(10)


#: The first process of the plugins' READMEs: serves, waits for one message in a Queue,
#: prints it and ends at once, while a receiver after the Queue still takes its time (a
#: log written slowly: the answer to the sender waits for every receiver).
_WAITS_FOR_ONE = """
import sys, time, berrymq
berrymq.init_connection(sys.argv[1])
queue = berrymq.Queue("job:*")
berrymq.regist_function("job:*", lambda message: time.sleep(0.3), weak=False)
print("ready", flush=True)
print(queue.get(timeout=60).args, flush=True)
"""


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_node_that_ends_once_its_queue_got_the_message_still_answers_its_sender(
        bus_factory: Callable[..., Bus], scheme: str) -> None:
    """The READMEs' two-process example: the node answers ``send_message`` once the
    message is in its Queue, and its program ends as soon as ``get`` returns. The answer
    was lost with the I/O loop at exit (in 9 of 10 runs over HTTP), so the sender logged
    'could not forward 1 message(s)' and counted a delivered message as lost; the node
    also printed asyncio's 'Task was destroyed' for a connection accepted while it ended."""
    url = f"{scheme}://127.0.0.1:{free_port()}"
    with subprocess.Popen([sys.executable, "-c", _WAITS_FOR_ONE, url], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as node:
        assert node.stdout is not None and node.stderr is not None
        try:
            assert node.stdout.readline() == "ready\n"
            sender = bus_factory()
            with berrymq.use_bus(sender):
                connection: Any = berrymq.connect_oneway(url)
                berrymq.send_message("job:done", "report.txt")
                connection.close()  # sends what is queued, then closes
            assert node.stdout.readline() == "('report.txt',)\n"
            assert node.wait(30) == 0
            errors = node.stderr.read()
        finally:
            node.kill()
    assert connection.losses == {}
    assert errors == ""


def test_tcp_peer_gone_is_known_at_the_next_send(berrymq_bus: Bus, spawn: Callable[..., Any],
                                                 wait_for: Callable[..., Any]) -> None:
    node = spawn()
    addr = node("serve", addr="tcp://127.0.0.1:0")
    connection = berrymq.connect_oneway(addr)
    node.kill()
    wait_for(lambda: connection.channel.closed, 10, "the end of the connection")  # type: ignore[attr-defined]
    with pytest.raises(berrymq.ConnectionClosed):
        berrymq.send_message("x:y")
