"""What is particular to TCP: lines, pipelining, both directions on one connection,
idle connections. (The protocol itself is tested over both transports in tests/remote.)"""

from __future__ import annotations

import gc
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest
from helpers import Buses, clean_env, serve
from probe_tools import JsonLines, request

import berrymq
from berrymq.bus import Bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings
from berrymq.transports.ioloop import READ_SIZE


def test_pipelined_requests_and_crlf(buses: Buses) -> None:
    _, port = serve(buses, "tcp")
    lines = JsonLines.connect(port)
    try:
        lines.send(*(request("connect_oneway", {}, i) for i in range(5)), end=b"\r\n")
        answers = [lines.read() for _ in range(5)]
        assert sorted(a["id"] for a in answers) == list(range(5))
        assert all(isinstance(a["result"], str) for a in answers)
    finally:
        lines.close()


@pytest.mark.parametrize("reply", [{"jsonrpc": "2.0", "result": 0, "id": {}},
                                   [{"result": None, "error": 1, "id": [1]}]])
def test_a_reply_with_an_id_no_request_can_have_is_passed_over(buses: Buses,
                                                               reply: object) -> None:
    """A response-shaped line whose id is an object or an array (a fuzzer's) raised
    TypeError (unhashable) on the I/O loop: the connection ended, and the requests after
    it in the same read went unanswered. It is taken as no answer to anything: dropped."""
    _, port = serve(buses, "tcp")
    lines = JsonLines.connect(port)
    try:
        lines.send(reply, request("no_such", {}, 2))
        assert lines.read()["id"] == 2  # Method not found, on the same connection
    finally:
        lines.close()


def test_one_connection_carries_both_directions(buses: Buses) -> None:
    bus, port = serve(buses, "tcp")
    back = berrymq.Queue("up:*", bus=bus)
    lines = JsonLines.connect(port)
    try:
        mine = "m" * 43  # the token the server must use when it calls us
        lines.send(request("interconnect", {"addr": None, "token": mine, "ttl": 60}, 1))
        theirs = lines.read()["result"]
        bus.twitter("down:hello", 1, k="v")
        call = lines.read()  # the server forwards on the same connection
        assert call["method"] == "send_messages"
        assert call["params"]["token"] == mine
        assert [m[:3] for m in call["params"]["messages"]] == [["down:hello", [1], {"k": "v"}]]
        lines.send({"jsonrpc": "2.0", "result": "ok", "id": call["id"]})
        lines.send(request("send_message", {"token": theirs, "identifier": "up:there"}, 2))
        assert lines.read() == {"jsonrpc": "2.0", "result": "ok", "id": 2}
        assert back.get(timeout=10).id == "up:there"
    finally:
        lines.close()
    # the connection's end closes the session and its link
    transport = bus.transport("tcp")
    deadline = time.monotonic() + 10
    while transport.service.sessions:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_idle_connection_without_session_is_closed(buses: Buses) -> None:
    _, port = serve(buses, "tcp", read_timeout=0.3)
    idle = JsonLines.connect(port)
    busy = JsonLines.connect(port)
    try:
        busy.send(request("connect_oneway", {"ttl": 60}, 1))
        assert "result" in busy.read()
        assert idle.reader.readline() == b""  # closed by the server
        start = time.monotonic()
        busy.sock.settimeout(0.6)
        with pytest.raises(TimeoutError):  # the one with a session stays open
            busy.sock.recv(1)
        assert time.monotonic() - start >= 0.5
    finally:
        idle.close()
        busy.close()


def test_a_connection_that_carries_a_sessions_messages_stays_open_while_it_lives(
        buses: Buses) -> None:
    """A token works from any connection: the one that brings a session's messages (an
    interconnection's call-back link, a client that connected again) was closed as idle,
    having opened no session, and the peer that linked over it took the node for gone
    and closed its link, while the session lived on."""
    _, port = serve(buses, "tcp", read_timeout=0.3)
    opener, carrier = JsonLines.connect(port), JsonLines.connect(port)
    try:
        opener.send(request("connect_oneway", {"ttl": 60}, 1))
        token = opener.read()["result"]
        carrier.send(request("send_message", {"token": token, "identifier": "up:one"}, 2))
        assert carrier.read() == {"jsonrpc": "2.0", "result": "ok", "id": 2}
        carrier.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):  # idle for over 3 x read_timeout: still open
            carrier.sock.recv(1)
        carrier.sock.settimeout(10)
        carrier.send(request("send_message", {"token": token, "identifier": "up:two"}, 3))
        assert carrier.read() == {"jsonrpc": "2.0", "result": "ok", "id": 3}
        opener.send(request("close_connection", {"token": token}, 4))
        assert opener.read()["result"] == "ok"
        assert carrier.reader.readline() == b""  # the session gone: closed when idle
    finally:
        opener.close()
        carrier.close()


def test_an_unfinished_line_is_freed_when_its_connection_closes(buses: Buses) -> None:
    """Stalled clients that each sent most of a line: once read_timeout closed them, what
    they sent is freed at once, not at the next full garbage collection (a closed
    connection's objects refer to each other)."""
    _, port = serve(buses, "tcp", read_timeout=0.3)
    part = b'{"jsonrpc":"2.0","method":"network","params":{"pad":"' + b"x" * 400_000
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        for sock in stalled:
            sock.sendall(part)
        for sock in stalled:  # answered and closed by the node after read_timeout
            sock.settimeout(10)
            while sock.recv(4096):
                pass
            sock.close()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert held < 1_000_000, f"{held:,} bytes still held of 4,000,000 sent"


def test_missing_plugin_is_named(buses: Buses) -> None:
    bus = buses.keep(Bus(plugins=PluginHost(Settings(), entry_points=False)))
    with pytest.raises(berrymq.PluginNotAvailable,
                       match=r"jsonrpc-tcp.*pip install \./plugins/berrymq-jsonrpc \./plugins/berrymq-jsonrpc-tcp"):
        bus.transport("tcp")


def test_lines_longer_than_a_read_and_interleaved_across_connections(buses: Buses) -> None:
    # Every connection of the loop is read into one buffer of the I/O thread: a line
    # longer than one read, and halves of lines sent on two connections in turn, must
    # each arrive whole and on their own connection.
    bus, port = serve(buses, "tcp")
    got: list[tuple[str, int]] = []
    both = threading.Event()

    def take(message: berrymq.Message) -> None:
        got.append((message.args[0], len(message.args[1])))
        if len(got) == 2:
            both.set()

    bus.subscribe("big:*", take, weak=False)
    first, second = JsonLines.connect(port), JsonLines.connect(port)
    tokens = []
    for lines in (first, second):
        lines.send(request("connect_oneway", {"ttl": 60}, 1))
        tokens.append(lines.read()["result"])
    big = "x" * (READ_SIZE * 2 + 17)  # three reads at least, under max_size (1 MiB)
    texts = [json.dumps(request("send_message", {"token": token, "identifier": f"big:{name}",
                                                 "args": [name, big]}, 2)).encode() + b"\n"
             for token, name in zip(tokens, ("first", "second"), strict=True)]
    half = len(texts[0]) // 2
    first.sock.sendall(texts[0][:half])
    second.sock.sendall(texts[1][:half])
    first.sock.sendall(texts[0][half:])
    second.sock.sendall(texts[1][half:])
    assert first.read()["result"] == "ok"
    assert second.read()["result"] == "ok"
    assert both.wait(10), got
    assert sorted(got) == [("first", len(big)), ("second", len(big))]
    first.close()
    second.close()


def test_a_peer_that_ends_the_connection_is_named_as_the_one_that_closed_it(
        buses: Buses) -> None:
    # The peer answers connect_oneway, reads the messages sent next and ends its side
    # without answering them (as a killed process's kernel does): the sender is told the
    # peer closed the connection, not that this end did (this end closes its side only
    # after the peer's end of input).
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def peer() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as reader:
            request_id = json.loads(reader.readline())["id"]
            conn.sendall(json.dumps({"jsonrpc": "2.0", "result": "t" * 22,
                                     "id": request_id}).encode() + b"\n")
            assert json.loads(reader.readline())["method"] == "send_messages"
            conn.shutdown(socket.SHUT_WR)
            reader.read()  # until the client's side is closed too

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    bus = buses()
    connection = bus.transport("tcp").connect_oneway(f"tcp://127.0.0.1:{port}", 60)
    connection.send(berrymq.Message("job:n", (1,)))
    with pytest.raises(berrymq.ConnectionClosed, match="the peer closed the connection"):
        connection.flush(10)
    thread.join(10)
    listener.close()


#: A node that a raw client sends five errors without id (one burst of the module-level
#: log of odd lines), then a request answered after them, and that ends at once.
ODD_LINES_THEN_EXIT = """
import json, socket
import berrymq

port = int(berrymq.init_connection("tcp://127.0.0.1:0").rsplit(":", 1)[1])
odd = json.dumps({"jsonrpc": "2.0", "error": {"code": 1, "message": "odd"}, "id": None})
ping = json.dumps({"jsonrpc": "2.0", "method": "get_nowait", "params": {"token": "x" * 43},
                   "id": 1})
with socket.create_connection(("127.0.0.1", port), timeout=30) as sock, \\
        sock.makefile("rb") as answers:
    sock.sendall(((odd + "\\n") * 5 + ping + "\\n").encode())
    assert json.loads(answers.readline())["id"] == 1  # read after the five
"""


def test_the_count_of_odd_lines_is_logged_when_the_process_ends_at_once() -> None:
    """The log of odd lines is kept at module level: no node closes it, and the timer of
    its closing line (5 s) dies with the process; it is written at exit all the same."""
    child = subprocess.run([sys.executable, "-c", ODD_LINES_THEN_EXIT], capture_output=True,
                           text=True, timeout=60, env=clean_env())
    assert child.returncode == 0, child.stderr
    lines = [line for line in child.stderr.splitlines() if "without id" in line]
    assert len(lines) == 2, child.stderr
    assert lines[1].endswith("(4 such events since the last line)"), child.stderr
    assert "Traceback" not in child.stderr


def test_an_oversized_line_is_answered_even_while_the_client_is_still_sending(
        buses: Buses) -> None:
    """A client that writes a line of several MB and then reads gets its *Message too
    large* answer and then the end of the connection: the node reads (and drops) the rest
    of the line before closing, where closing on unread input reset the connection and
    the answer went with it (2 of 5 answered at 6 MB)."""
    _, port = serve(buses, "tcp")
    line = (b'{"jsonrpc":"2.0","method":"connect_oneway","params":["' + b"x" * (6 << 20)
            + b'"],"id":1}\n')
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(line)
            reader = sock.makefile("rb")
            answer = json.loads(reader.readline())
            assert answer["error"]["code"] == -32003 and answer["id"] is None, answer
            assert reader.read() == b""  # then the node closed it (a FIN, not a reset)
            reader.close()


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\r\nHost: evil.example\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n",
    b"GET /x HTTP/1.0\r\n\r\n",
])
def test_an_http_request_to_the_tcp_port_runs_nothing_of_its_body(
        buses: Buses, head: bytes) -> None:
    """Any web page can make a browser send an HTTP request to any port: its body's JSON
    lines ran as JSON-RPC here (an ask reached a receiver, sessions were opened). The
    first line being an HTTP request line, the connection is answered with an error line
    and closed, and nothing of it runs."""
    bus, port = serve(buses, "tcp")
    ran: list[object] = []
    bus.subscribe("pwn:*", ran.append, weak=False)
    body = b"\n" + b"\n".join(json.dumps(r).encode() for r in [
        request("ask", {"identifier": "pwn:go", "timeout": 1}, 1),
        request("connect_oneway", {"ttl": 86400}, 2)]) + b"\n"
    data = (head % len(body) if b"%d" in head else head) + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        answer = json.loads(reader.readline())
        assert answer["error"]["code"] == -32600 and answer["id"] is None
        assert "not HTTP" in answer["error"]["data"]
        assert reader.read() == b""  # closed
        reader.close()
    assert ran == []
    assert not bus.transport("tcp").service.sessions  # type: ignore[attr-defined]
    # a client that speaks the line protocol is served as before
    lines = JsonLines.connect(port)
    try:
        lines.send(request("connect_oneway", {}, 3))
        assert type(lines.read()["result"]) is str
    finally:
        lines.close()


#: How a line may end: a newline, CRLF, or (the last line) the end of the client's input,
#: with or without a carriage return before it.
ENDINGS = {"LF": b"\n", "CRLF": b"\r\n", "CR-then-EOF": b"\r", "EOF": b""}


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("over", [0, 1], ids=["max_size", "max_size+1"])
def test_max_size_counts_a_line_without_its_ending(buses: Buses, ending: str, over: int) -> None:
    """A request of exactly ``max_size`` bytes is taken however its line ends (a CRLF
    line of it was refused with -32003 where the LF one was taken); one byte more is
    refused either way."""
    bus, port = serve(buses, "tcp")
    limit = bus.transport("tcp").max_size  # type: ignore[attr-defined]
    head, tail = b'{"jsonrpc":"2.0","method":"connect_oneway","params":{},"id":1', b"}"
    line = head + b" " * (limit + over - len(head) - len(tail)) + tail
    assert len(line) == limit + over
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(line + ENDINGS[ending])
        if ending.endswith("EOF"):
            sock.shutdown(socket.SHUT_WR)
        reader = sock.makefile("rb")
        answer = json.loads(reader.readline())
        reader.close()
    if over:
        assert answer["error"]["code"] == -32003 and answer["id"] is None, answer
    else:
        assert isinstance(answer.get("result"), str), answer


def test_an_answer_to_no_request_waiting_is_said(buses: Buses,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A node that answered a get twice gave two messages for one get: the second, taken
    from its queue for nobody, was dropped without a word (an outside audit)."""
    server = socket.create_server(("127.0.0.1", 0))

    def node() -> None:  # answers the session, then each request twice
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as reader:
            for i, line in enumerate(iter(reader.readline, b"")):
                ask = json.loads(line)
                results = (["t" * 43] if i == 0 else
                           [["job:a", [], {}], ["job:b", [], {}]])
                conn.sendall(b"".join(json.dumps({"jsonrpc": "2.0", "result": result,
                                                  "id": ask["id"]}).encode() + b"\n"
                                      for result in results))

    thread = threading.Thread(target=node, daemon=True)
    thread.start()
    url = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    with caplog.at_level(logging.WARNING, logger="berrymq.remote.tcp"):
        connection = buses().transport("tcp").connect_via_queue(url, berrymq.Identifier("job:*"),
                                                                60)
        assert connection.get_nowait().id == "job:a"
        deadline = time.monotonic() + 15  # at once, or in its burst's closing line (5 s)
        while "sent an answer to no request waiting" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    assert "job:b" in caplog.text
    connection.close()
    server.close()
    thread.join(10)
