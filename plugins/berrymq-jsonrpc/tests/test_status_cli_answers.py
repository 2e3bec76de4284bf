"""``berrymq status`` against answers no node gives (an outside probe's findings): a server
that trickles its answer, one that never ends it, JSON of another service; and a node too
big to print whole.

The servers here are real sockets on loopback, each answering one connection from a
thread; ``berrymq status`` runs as its own process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from berrymq_cli_procs import one_error_line
from berrymq_jsonrpc.status import status_snapshot
from berrymq_jsonrpc.status_cli import MAX_ANSWER, ROWS, _cmd_status, format_status
from helpers import run_berrymq as run

from berrymq.bus import Bus

Answer = Callable[[socket.socket, threading.Event], None]


@pytest.fixture
def fake_server() -> Iterator[Callable[[Answer], str]]:
    """Serve one connection with ``answer(sock, stop)`` on a free loopback port: its URL."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(answer: Answer) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            sock, _ = listener.accept()
            with sock:
                sock.recv(65536)  # the request: a GET, read whole or not, does not matter
                try:
                    answer(sock, stop)
                except OSError:  # the client went away: what these servers wait for
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


def trickle(sock: socket.socket, stop: threading.Event) -> None:
    """A head promising 100,000 bytes, then a byte every 0.3 s (each read of the client's
    returns before its socket timeout, so only an overall deadline ends it)."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n")
    while not stop.wait(0.3):
        sock.sendall(b" ")


def endless(sock: socket.socket, stop: threading.Event) -> None:
    """A body with no length that never ends (read until the connection closes)."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
    chunk = b"1," * 512 * 1024
    while not stop.is_set():
        sock.sendall(chunk)


def announced_huge(sock: socket.socket, stop: threading.Event) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n[" % (MAX_ANSWER + 1))
    stop.wait(30)


def other_service(sock: socket.socket, stop: threading.Event) -> None:
    body = b'{"version": 1}'
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def test_a_server_that_trickles_its_answer_is_cut_off_at_the_timeout(
        tmp_path: Path, fake_server: Callable[[Answer], str]) -> None:
    # --timeout bounded each read only: this went on for the whole body (5 hours here)
    url = fake_server(trickle)
    start = time.monotonic()
    line = one_error_line(run("status", url, "--timeout", "1.5", cwd=tmp_path), 1)
    assert line == f"berrymq: error: {url}/status did not answer within 1.5s", line
    assert time.monotonic() - start < 15  # the process's start-up included


@pytest.mark.parametrize("answer", [endless, announced_huge])
def test_an_answer_larger_than_any_status_is_refused_not_read_into_memory(
        tmp_path: Path, fake_server: Callable[[Answer], str], answer: Answer) -> None:
    url = fake_server(answer)
    line = one_error_line(run("status", url, "--timeout", "30", cwd=tmp_path), 1)
    assert line == (f"berrymq: error: {url}/status answered with over 64 MiB, more than a "
                    "node's status holds; the answer was not read"), line


def test_json_of_another_service_is_named_not_a_traceback(
        tmp_path: Path, fake_server: Callable[[Answer], str]) -> None:
    url = fake_server(other_service)
    line = one_error_line(run("status", url, cwd=tmp_path), 1)
    assert line == (f"berrymq: error: {url}/status did not answer with a berryMQ node's "
                    "status: server, messages, bytes, lost, sessions, connections, queues, "
                    'recent, plugins missing from {"version": 1}'), line


def test_a_node_with_many_sessions_prints_the_first_rows_and_says_how_many_more(
        bus_factory: Callable[..., Bus], capsys: pytest.CaptureFixture[str]) -> None:
    node = bus_factory()
    url = node.transport("http").listen("http://127.0.0.1:0")
    port = int(url.rsplit(":", 1)[1])
    sessions = ROWS + 7
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    for i in range(sessions):
        connection.request("POST", "/", b'{"jsonrpc": "2.0", "method": "connect_oneway", '
                                         b'"id": %d}' % i, {"Content-Type": "application/json"})
        assert b'"result"' in connection.getresponse().read()
    connection.close()

    lines = format_status(status_snapshot(node)).splitlines()
    table = lines[lines.index("sessions:") + 2:lines.index("connections:")]
    assert len(table) == ROWS + 1 and all(row.split()[1] == "oneway" for row in table[:-1])
    assert table[-1] == "  ... and 7 more (--all or --json shows every one)"

    args = argparse.Namespace(url=url, json=False, all=True, secret=None, timeout=20.0)
    assert _cmd_status(args) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index("sessions:") + 2:lines.index("connections:")]
    assert len(table) == sessions and all(row.split()[1] == "oneway" for row in table)


def _status_answer(status: dict[str, object]) -> Answer:
    body = json.dumps(status).encode()

    def answer(sock: socket.socket, stop: threading.Event) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    return answer


def test_what_a_node_was_told_reaches_the_terminal_escaped(
        bus_factory: Callable[..., Bus], fake_server: Callable[[Answer], str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # a peer's name (a 1.0 call-back path) printed as sent could retitle, clear or
    # recolour the operator's terminal; a lone surrogate ended the command in a traceback
    status = status_snapshot(bus_factory())
    status["server"]["bus"] = "\x1b]0;PWNED\x07\x1b[2J"
    status["recent"] = [{"time": 0, "direction": "in", "identifier": "a:b",
                         "peer": "http://127.0.0.1:9/\ud800\x00"}]
    args = argparse.Namespace(url=fake_server(_status_answer(status)), json=False, all=False,
                              secret=None, timeout=10.0)
    assert _cmd_status(args) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x00" not in out
    assert "bus \\x1b]0;PWNED\\x07\\x1b[2J" in out
    assert "http://127.0.0.1:9/\\ud800\\x00" in out


def test_a_time_no_clock_shows_is_named_not_a_traceback(
        bus_factory: Callable[..., Bus], fake_server: Callable[[Answer], str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # time.localtime(1e18) raised OSError, reported as the plugin's failure
    status = status_snapshot(bus_factory())
    status["recent"] = [{"time": 1e18, "direction": "in", "identifier": "a:b", "peer": None}]
    args = argparse.Namespace(url=fake_server(_status_answer(status)), json=False, all=False,
                              secret=None, timeout=10.0)
    assert _cmd_status(args) == 1
    err = capsys.readouterr().err
    assert "could not be read: OverflowError" in err or "could not be read: OSError" in err
