"""The HTTP client's connections when the I/O loop stops: every one is closed, on the loop,
before it closes.

A keep-alive connection idle in a channel's pool stayed open when the loop stopped, and
at interpreter exit asyncio warned of it (``ResourceWarning: unclosed transport``, ``loop
is closed``). ``berrymq listen --no-reconnect`` over HTTP did so now and then: the node
answered its ``get`` "unknown token" on a kept connection as it stopped, the connection
was closed on a daemon thread (the peer was gone), and the exit stopped the loop before
that thread reached the channel. The fake server here sees from its side whether the
client closed a connection.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import berrymq_jsonrpc.connection
import pytest
from berrymq_jsonrpc_http.client import HttpChannel
from helpers import WAIT, Buses, clean_env

import berrymq
from berrymq.identifier import Identifier
from berrymq.transports.ioloop import io_loop

#: The answer of a node that stopped (and so closed the session) to a ``get``.
UNKNOWN_TOKEN = {"code": -32001, "message": "Unknown or expired token"}


class KeptServer:
    """An HTTP server on 127.0.0.1 that answers every JSON-RPC request with ``"t0"`` on a
    kept connection, except ``get``, which it reads and never answers (a peer stuck or
    dying mid-request) unless :attr:`get_error` is set; :attr:`ends` gets one entry per
    connection the client closed."""

    def __init__(self) -> None:
        self.get_error: dict[str, Any] | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.ends: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed at the end of the test
            self.accepted.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    break  # the client closed the connection
                length = 0
                while line != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    line = reader.readline()
                request = json.loads(reader.read(length))
                self.requests.put(request["method"])
                answer: dict[str, Any] = {"jsonrpc": "2.0", "result": "t0", "id": request["id"]}
                if request["method"] == "get":
                    if self.get_error is None:
                        continue  # no answer, ever
                    answer = {"jsonrpc": "2.0", "error": self.get_error, "id": request["id"]}
                body = json.dumps(answer)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
        except OSError:
            pass  # reset: closed as well
        self.ends.put("closed")

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def server() -> Iterator[KeptServer]:
    made = KeptServer()
    yield made
    made.close()


def _channel(url: str) -> HttpChannel:
    return HttpChannel(url, secret=None, max_size=1 << 20, timeout=WAIT, idle=60.0)


def test_a_kept_idle_connection_is_closed_when_the_loop_stops(server: KeptServer) -> None:
    channel = _channel(server.url)
    assert channel.call("connect_oneway", {}) == "t0"  # its connection is kept, idle
    assert server.requests.get(timeout=WAIT) == "connect_oneway"
    assert server.ends.empty()
    io_loop.stop()  # as at exit, with the channel not closed
    assert server.ends.get(timeout=WAIT) == "closed"  # was left open
    # the channel is not closed: a later request opens a connection on the new loop
    assert channel.call("connect_oneway", {}) == "t0"
    channel.close()
    assert server.ends.get(timeout=WAIT) == "closed"


def test_a_connection_waiting_for_an_answer_is_closed_when_the_loop_stops(
        server: KeptServer) -> None:
    channel = _channel(server.url)
    assert channel.call("connect_oneway", {}) == "t0"
    failed: queue.SimpleQueue[BaseException] = queue.SimpleQueue()

    def waits() -> None:
        try:
            channel.call("get", {})
        except BaseException as exc:  # what ended the wait, for the test
            failed.put(exc)

    threading.Thread(target=waits, daemon=True).start()
    assert server.requests.get(timeout=WAIT) == "connect_oneway"
    assert server.requests.get(timeout=WAIT) == "get"  # read, and never answered
    io_loop.stop()
    assert server.ends.get(timeout=WAIT) == "closed"
    assert failed.get(timeout=WAIT) is not None  # the call ended with the loop
    channel.close()


def test_a_get_finding_the_node_gone_has_closed_the_connection_when_it_raises(
        server: KeptServer, buses: Buses, monkeypatch: pytest.MonkeyPatch) -> None:
    # berrymq listen --no-reconnect: the node stopping answers the get "unknown token" on
    # the kept connection; the close was handed to a WAITS thread, and the listener went
    # on to end the process meanwhile. Here that thread never comes.
    late: list[Callable[..., object]] = []
    monkeypatch.setattr(berrymq_jsonrpc.connection, "in_waits",
                        lambda function, *args: late.append(function))
    server.get_error = UNKNOWN_TOKEN
    connection = buses().transport("http").connect_via_queue(server.url, Identifier("job:*"),
                                                             60)
    with pytest.raises(berrymq.ConnectionClosed, match="no longer knows this connection"):
        connection.get(timeout=WAIT)
    assert connection.closed  # by the time the error came
    assert server.ends.get(timeout=WAIT) == "closed"
    assert late == []
    with pytest.raises(berrymq.ConnectionClosed, match="Unknown or expired token"):
        connection.get(timeout=WAIT)  # says why it closed


_LEFT_OPEN = """
import gc, sys
import berrymq
from berrymq.identifier import Identifier
connection = berrymq.connect_oneway(sys.argv[1])
connection = None  # never closed: the loop stops at exit with it kept
gc.collect()
"""


def test_a_program_ending_with_a_connection_open_warns_of_nothing(server: KeptServer) -> None:
    # the warnings are errors, as for a user's program that runs with -W error
    result = subprocess.run([sys.executable, "-c", _LEFT_OPEN, server.url], text=True,
                            capture_output=True, env=clean_env(), timeout=WAIT)
    assert server.requests.get(timeout=WAIT) == "connect_oneway"
    assert (result.returncode, result.stderr) == (0, "")
    assert server.ends.get(timeout=WAIT) == "closed"
