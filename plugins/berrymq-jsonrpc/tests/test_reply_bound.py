"""The bound on what a node answers (docs/protocol.md, "Batches" and "Limits"): one answer
is at most 4 x max_size bytes however small its request, a batch stops running members
once its answer would pass that, and a TCP client that reads no answers stops being read
rather than making the node hold them."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import berrymq_jsonrpc.monitor
import berrymq_jsonrpc_http.accepted
import berrymq_jsonrpc_tcp.deadline
import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.monitor import status_snapshot
from helpers import serve
from probe_tools import TOKEN, http_answer, request, send_request

import berrymq
from berrymq.bursts import BurstLog
from berrymq.bus import Bus
from berrymq.transports.ioloop import io_loop

SCHEMES = ["tcp", "http"]
WAIT = 10.0
MAX_SIZE = 65536
LIMIT = 4 * MAX_SIZE  # the most bytes of one answer
NOT_RUN = {"code": p.LIMIT_REACHED, "message": "Limit reached",
           "data": {"setting": "max_size", "limit": MAX_SIZE}}


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Wire:
    """One connection to a node: a request, its answer's raw text."""

    def __init__(self, scheme: str, port: int) -> None:
        self.scheme = scheme
        self.sock = socket.create_connection(("127.0.0.1", port), WAIT)
        self.reader = self.sock.makefile("rb")

    def ask(self, request: Any) -> bytes:
        body = request if isinstance(request, bytes) else compact(request)
        send_request(self.sock, self.scheme, body)
        if self.scheme == "tcp":
            return self.reader.readline().rstrip(b"\n")
        status, answer = http_answer(self.sock)
        assert status == 200, answer
        return answer

    def result(self, request: Any) -> Any:
        return json.loads(self.ask(request))["result"]

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@pytest.fixture(params=SCHEMES)
def node(request: pytest.FixtureRequest, bus_factory: Callable[..., Bus]) -> Iterator[tuple[Bus, Wire]]:
    bus, port = serve(bus_factory, request.param, max_size=MAX_SIZE)
    wire = Wire(request.param, port)
    yield bus, wire
    wire.close()


def test_a_batch_of_network_calls_is_answered_within_the_limit(node: tuple[Bus, Wire]) -> None:
    # the report: a small request of many network calls, whose answers come to far more
    _, wire = node
    batch = [request("network", id=i % 100) for i in range(1400)]  # 63 KB, a 600 KB answer
    answer = wire.ask(batch)
    assert len(answer) <= LIMIT
    replies = json.loads(answer)
    assert [reply["id"] for reply in replies] == [i % 100 for i in range(1400)]
    ran = [reply for reply in replies if "result" in reply]
    assert 0 < len(ran) < len(replies)
    assert replies[:len(ran)] == ran  # the members up to the limit ran, in order
    assert all(reply["error"] == NOT_RUN for reply in replies[len(ran):])
    assert TOKEN.fullmatch(wire.result(request("connect_oneway", id=1)))  # and it serves on


def test_a_get_that_took_a_message_keeps_it_and_the_members_past_the_limit_do_not_run(
        node: tuple[Bus, Wire]) -> None:
    bus, wire = node
    queue = wire.result(request("connect_via_queue", {"identifier": "big:*", "ttl": 60}, 1))
    for i in range(6):
        bus.twitter("big:x", i, "x" * 60_000)
    batch = [request("get_nowait", {"token": queue}, i) for i in range(6)]
    batch.append(request("send_message", {"token": queue, "identifier": "big:late", "args": []}, 6))
    answer = wire.ask(batch)
    assert len(answer) <= LIMIT
    replies = json.loads(answer)
    # four messages fit; the fifth get finds no room for its message and leaves it queued
    assert [reply["result"][1][0] for reply in replies[:4]] == [0, 1, 2, 3]
    assert [reply["error"] for reply in replies[4:]] == [NOT_RUN] * 3
    # nothing lost: the rest is still queued, and the send_message did not run
    for i in (4, 5):
        assert wire.result(request("get_nowait", {"token": queue}, 1))[1][0] == i
    assert json.loads(wire.ask(request("get_nowait", {"token": queue}, 1)))["error"]["code"] == p.EMPTY


def test_a_batch_whose_errors_alone_would_pass_the_limit_runs_nothing(node: tuple[Bus, Wire]) -> None:
    _, wire = node
    queue = wire.result(request("connect_via_queue", {"identifier": "job:*", "ttl": 60}, 1))
    sent = compact(request("send_message", {"token": queue, "identifier": "job:x"}, id=None))
    body = b"[" + sent + b"," + b",".join([b"1"] * 30_000) + b"]"  # 60 KB, 2.4 MB of errors
    refusal = json.loads(wire.ask(body))
    assert refusal["id"] is None and refusal["error"]["code"] == p.LIMIT_REACHED
    assert refusal["error"]["data"]["setting"] == "max_size"
    assert "none was run" in refusal["error"]["data"]["detail"]
    assert json.loads(wire.ask(request("get_nowait", {"token": queue}, 1)))["error"]["code"] == p.EMPTY


@pytest.mark.parametrize("scheme", SCHEMES)
def test_one_answer_over_the_limit_gives_way_to_an_error_naming_it(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, scheme, max_size=1024)  # answers of at most 4096 bytes
    for i in range(40):  # a network answer of 6 KB
        bus.subscribe(f"pattern{i}:x", lambda message: None, weak=False)
    ran = threading.Event()

    def large(message: berrymq.Message) -> str:
        ran.set()
        return "x" * 10_000

    bus.subscribe("big:reply", large, weak=False)
    wire = Wire(scheme, port)
    error = json.loads(wire.ask(request("network", id=1)))["error"]
    assert (error["code"], error["data"]["setting"], error["data"]["limit"]) == (p.LIMIT_REACHED, "max_size", 1024)
    assert "over 4096 bytes" in error["data"]["detail"]
    # a picture too big to answer: where it is served whole (berrymq graph prints this)
    assert error["data"]["detail"].endswith(
        "; GET /network on the node's HTTP port or --monitor address gives the picture whole")
    asked = request("ask", {"identifier": "big:reply", "timeout": 5}, 2)
    error = json.loads(wire.ask(asked))["error"]
    assert error["code"] == p.LIMIT_REACHED and ran.is_set()
    assert error["data"]["detail"].startswith("its receivers ran (the message was delivered)")
    assert TOKEN.fullmatch(wire.result(request("connect_oneway", id=3)))
    wire.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_message_no_client_could_get_is_refused_by_a_remote_queue_when_it_comes(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, scheme, max_size=4096)
    wire = Wire(scheme, port)
    queue = wire.result(request("connect_via_queue", {"identifier": "big:*", "ttl": 60}, 1))
    with pytest.raises(berrymq.QueueFull, match=r"over 4096 bytes \(setting max_size\)"):
        bus.twitter("big:x", "x" * 10_000)  # from the node's own process: not a request
    assert json.loads(wire.ask(request("get_nowait", {"token": queue}, 1)))["error"]["code"] == p.EMPTY
    wire.close()


def _network_client(bus_factory: Callable[..., Bus], receive_buffer: int, scheme: str = "tcp",
                    **settings: Any) -> tuple[Bus, socket.socket]:
    """A node whose ``network`` answers are 30 KB each (for a request of 45 bytes), and a
    client connected to it with a small receive buffer."""
    bus, port = serve(bus_factory, scheme, max_size=MAX_SIZE, **settings)
    for i in range(200):
        bus.subscribe(f"pattern{i}:x", lambda message: None, weak=False)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    return bus, sock


@pytest.mark.parametrize("form", ["alone", "in batches"])
def test_a_tcp_client_that_reads_no_answers_is_not_read_on(
        form: str, bus_factory: Callable[..., Bus], wait_for: Callable[..., Any]) -> None:
    bus, sock = _network_client(bus_factory, 4096)  # (what the kernel takes for it)
    with sock:
        requests = [request("network", id=i) for i in range(500)]  # 15 MB of answers
        sock.sendall(b"".join(compact(r if form == "alone" else [r]) + b"\n" for r in requests))
        channels = bus.transport("tcp")._servers[0].channels  # type: ignore[attr-defined]
        channel = wait_for(lambda: next(iter(channels), None), WAIT, "the node to accept")

        async def stopped() -> int | None:
            # on the I/O loop, between two of its callbacks: what the node holds for the
            # client once it stopped reading it, holding requests it has not run
            answers = channel.answers
            if channel._paused and answers.held and not getattr(answers, "pieces", 0):
                return int(channel.transport.get_write_buffer_size())
            return None

        held = wait_for(lambda: io_loop.run(stopped(), WAIT), WAIT, "the node to stop")
        assert held <= (1 << 20) + 2 * LIMIT  # its high-water mark, and a piece of work
        reader = sock.makefile("rb")
        answers = [json.loads(reader.readline()) for _ in requests]  # all of them, in the end
    ids = [(answer if form == "alone" else answer[0])["id"] for answer in answers]
    assert ids == list(range(500))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_client_that_leaves_its_answers_unread_is_closed_at_read_timeout(
        scheme: str, bus_factory: Callable[..., Bus], wait_for: Callable[..., Any],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TCP one was held open for ever, with its answers and the requests read behind
    them (and their shares of max_reading_bytes, which other clients' large requests wait
    for). Both are counted in /status refused and logged alike: the HTTP close was
    neither counted nor logged once per burst."""
    _fresh_burst_logs(monkeypatch)
    bus, sock = _network_client(bus_factory, 4096, scheme, read_timeout=1)
    with sock, caplog.at_level("WARNING", logger=f"berrymq.remote.{scheme}"):
        for i in range(500):  # pipelined, none of the answers read
            send_request(sock, scheme, compact(request("network", id=i)))
        server = bus.transport(scheme)._servers[0]  # type: ignore[attr-defined]
        held = server.channels if scheme == "tcp" else server.connections
        wait_for(lambda: len(held) == 1, WAIT, "the node to accept")
        wait_for(lambda: not held, WAIT, "the node to close the connection")
        got = b""
        with contextlib.suppress(OSError):  # reset, or ended: what it did not read is gone
            while chunk := sock.recv(1 << 20):
                got += chunk
        assert got.count(b"\n" if scheme == "tcp" else b"HTTP/1.1 200") < 500
    said = [r.getMessage() for r in caplog.records if "did not read its answers" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("within read_timeout (1s); closed"), caplog.text
    assert status_snapshot(bus)["refused"]["reasons"] == {"read_timeout": 1}


def test_a_tcp_client_reading_its_answers_slowly_but_steadily_is_not_closed(
        bus_factory: Callable[..., Bus]) -> None:
    """The deadline ran from when the answers first went over the high-water mark: a
    client reading 8 MB at 500 KB/s was closed after 5 MB (found by a review)."""
    _, sock = _network_client(bus_factory, 32768, read_timeout=2)
    with sock:
        sock.sendall(b"".join(compact(request("network", id=i)) + b"\n" for i in range(100)))
        got = b""
        while got.count(b"\n") < 100:  # 3 MB at about 500 KB/s: 6 s in all
            chunk = sock.recv(50_000)
            assert chunk, (len(got), got.count(b"\n"))  # closed: bytes and answers read
            got += chunk
            time.sleep(0.1)  # the reading pace is what is tested



def _fresh_burst_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The logs of unread answers as at the start of a process: an earlier test's line
    would make this test's event a count in the burst under way."""
    for module in (berrymq_jsonrpc_tcp.deadline, berrymq_jsonrpc_http.accepted):
        monkeypatch.setattr(module, "_unread", BurstLog(module.logger))


def _large_status_client(bus_factory: Callable[..., Bus], monkeypatch: pytest.MonkeyPatch,
                         receive_buffer: int) -> tuple[Bus, socket.socket]:
    """An HTTP node (read_timeout 1 s) whose status is 8 MB, and a client with a small
    receive buffer that asked for it: twice what the kernel holds of an answer."""
    snapshot = berrymq_jsonrpc.monitor.status_snapshot
    monkeypatch.setattr(berrymq_jsonrpc.monitor, "status_snapshot",  # a large node's status
                        lambda bus: {**snapshot(bus), "padding": "x" * 8_000_000})
    bus, port = serve(bus_factory, "http", read_timeout=1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return bus, sock


def test_an_http_client_reading_a_large_status_slowly_but_steadily_is_not_closed(
        bus_factory: Callable[..., Bus], monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline of a status answer ran from its first piece: a client reading an 8 MB
    status at 2 MB/s was closed after read_timeout (the kernel holds up to 4 MB of it)."""
    _, sock = _large_status_client(bus_factory, monkeypatch, 262144)
    with sock:
        got = b""
        while not got.endswith(b"}"):  # 8 MB at about 2 MB/s: 4 s in all
            chunk = sock.recv(200_000)
            assert chunk, len(got)  # closed: the bytes read
            got += chunk
            time.sleep(0.1)  # the reading pace is what is tested
    status = json.loads(got.split(b"\r\n\r\n", 1)[1])
    assert len(status["padding"]) == 8_000_000


def test_an_http_client_that_leaves_a_large_status_unread_is_closed_at_read_timeout(
        bus_factory: Callable[..., Bus], monkeypatch: pytest.MonkeyPatch,
        wait_for: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    _fresh_burst_logs(monkeypatch)
    bus, sock = _large_status_client(bus_factory, monkeypatch, 4096)
    with sock, caplog.at_level("WARNING", logger="berrymq.remote.http"):
        server = bus.transport("http")._servers[0]  # type: ignore[attr-defined]
        wait_for(lambda: len(server.connections) == 1, WAIT, "the node to accept")
        wait_for(lambda: not server.connections, WAIT, "the node to close the connection")
        got = b""
        with contextlib.suppress(OSError):  # reset, or ended: what it did not read is gone
            while chunk := sock.recv(1 << 20):
                got += chunk
        assert len(got) < 8_000_000
    assert any("did not read its answers within read_timeout (1s)" in r.getMessage()
               for r in caplog.records), caplog.text
    assert status_snapshot(bus)["refused"]["reasons"] == {"read_timeout": 1}
