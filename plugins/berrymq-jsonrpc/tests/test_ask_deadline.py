"""A remote ``ask`` with a ``timeout`` is answered by then (docs/protocol.md, ask): a
receiver still running gives a TimeoutError entry, and the deadline counts from the
request's arrival, so that asks waiting behind other clients' slow ones keep theirs."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.ask_timer import not_started
from berrymq_jsonrpc.sessions import WAIT_THREADS, WAITS
from helpers import HeldReceiver, serve, wait_for
from probe_tools import post_body, tcp_call

from berrymq.bus import Bus
from berrymq.message import Message

WAIT = 15.0


def ask(identifier: str, timeout: float | None, id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "ask", "id": id,
            "params": {"identifier": identifier, "args": [2], "timeout": timeout}}


@pytest.fixture
def released() -> Iterator[threading.Event]:
    """Set at the end of the test: the slow receivers return then."""
    release = threading.Event()
    yield release
    release.set()


def stuck_node(bus_factory: Callable[..., Bus], released: threading.Event
               ) -> tuple[int, int, threading.Semaphore]:
    """A node serving TCP and HTTP (their ports), where ``price:quote`` answers at once and
    ``slow:ask`` is stuck until ``released`` (each of those releases the semaphore)."""
    bus, tcp_port = serve(bus_factory, "tcp")
    http_port = int(bus.transport("http").listen("http://127.0.0.1:0").rsplit(":", 1)[1])
    bus.subscribe("price:quote", lambda m: m.args[0] * 9.5, weak=False)
    entered = threading.Semaphore(0)

    def stuck(message: Message) -> None:
        entered.release()
        released.wait(WAIT)

    bus.subscribe("slow:ask", stuck, weak=False)
    return tcp_port, http_port, entered


def hold_every_thread(hogs: list[socket.socket], entered: threading.Semaphore) -> None:
    """Ask ``slow:ask`` (see :func:`stuck_node`) over two connections, 16 each, until
    every thread that runs asks holds one."""
    for hog in hogs:
        hog.sendall(b"".join(json.dumps(ask("slow:ask", WAIT, i)).encode() + b"\n"
                             for i in range(WAIT_THREADS // 2)))
    for _ in range(WAIT_THREADS):
        assert entered.acquire(timeout=WAIT)


def quoting_node(bus_factory: Callable[..., Bus], scheme: str,
                 released: threading.Event) -> int:
    """The port of a node serving ``scheme`` where ``price:quote`` has a quick receiver,
    then ``slow_quote``, stuck until ``released``."""
    bus, port = serve(bus_factory, scheme)
    bus.subscribe("price:quote", lambda m: m.args[0] * 9.5, weak=False)

    def slow_quote(message: Message) -> float:
        released.wait(WAIT)
        return 0.0

    bus.subscribe("price:quote", slow_quote, weak=False)
    return port


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_receiver_still_running_at_the_timeout_gives_a_timeout_entry(
        scheme: str, bus_factory: Callable[..., Bus], released: threading.Event) -> None:
    port = quoting_node(bus_factory, scheme, released)
    started = time.monotonic()
    if scheme == "tcp":
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            answer = tcp_call(sock, ask("price:quote", 0.5))
    else:
        answer = post_body(port, json.dumps(ask("price:quote", 0.5)).encode())
    took = time.monotonic() - started
    assert 0.4 < took < WAIT / 2, took
    first, second = answer["result"]
    assert first == {"value": 19.0}
    assert second["error"]["type"] == "TimeoutError"
    assert "slow_quote" in second["error"]["receiver"]


@pytest.mark.parametrize("scheme", ["tcp", "http"])
@pytest.mark.parametrize("style", ["oneway", "interconnect"])
def test_berrymqs_client_gets_the_replies_that_came_before_the_timeout(
        scheme: str, style: str, bus_factory: Callable[..., Bus],
        released: threading.Event) -> None:
    """The node answers at its deadline with the replies so far; berryMQ's client waits a
    moment past its own for that answer: it stopped waiting at the same moment and
    returned one TimeoutError naming the link, the fast receiver's reply lost with it."""
    port = quoting_node(bus_factory, scheme, released)
    asker = bus_factory()
    if scheme == "http" and style == "interconnect":
        asker.transport("http").listen("http://127.0.0.1:0")  # the node calls back here
    url = f"{scheme}://127.0.0.1:{port}"
    transport = asker.transport(scheme)
    connection = (transport.interconnect(url, 60) if style == "interconnect"
                  else transport.connect_oneway(url, 60))
    asker.track_connection(connection)
    started = time.monotonic()
    replies = asker.ask("price:quote", 2, timeout=1.0)
    took = time.monotonic() - started
    assert took < 1.0 + 0.5, took
    assert len(replies) == 2, replies
    assert replies[0] == 19.0
    assert replies[1].exception_type == "TimeoutError", replies
    assert "slow_quote" in replies[1].receiver, replies


def test_a_client_with_slow_asks_does_not_hold_other_clients_past_their_timeout(
        bus_factory: Callable[..., Bus], released: threading.Event) -> None:
    tcp_port, http_port, entered = stuck_node(bus_factory, released)
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=WAIT) as hog:
        # as many asks as one connection may have waiting (max_waiting): half the threads
        hog.sendall(b"".join(json.dumps(ask("slow:ask", 1.0, i)).encode() + b"\n"
                             for i in range(16)))
        assert entered.acquire(timeout=WAIT)  # the slow receivers are running
        started = time.monotonic()
        # its own deadline is later than theirs: once they give up, it is answered
        answer = post_body(http_port, json.dumps(ask("price:quote", 5.0)).encode())
        took = time.monotonic() - started
        assert answer["result"] == [{"value": 19.0}]
        assert took < 5.0, took  # not behind the 16 slow receivers (until the test ends)
        data = b""
        while data.count(b"\n") < 16:  # the hog's asks: each a timeout entry, by its deadline
            chunk = hog.recv(65536)
            assert chunk
            data += chunk
    for line in data.splitlines():
        [entry] = json.loads(line)["result"]
        assert entry["error"]["type"] == "TimeoutError"


@pytest.mark.parametrize("timeout", [None, 5])
def test_a_quick_ask_is_answered_whatever_its_timeout(
        bus_factory: Callable[..., Bus], timeout: float | None) -> None:
    bus, port = serve(bus_factory, "tcp")
    bus.subscribe("price:quote", lambda m: m.args[0] * 9.5, weak=False)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        assert tcp_call(sock, ask("price:quote", timeout))["result"] == [{"value": 19.0}]
        assert tcp_call(sock, ask("nobody:home", timeout))["result"] == []


def test_an_ask_that_finds_every_thread_busy_is_answered_at_its_timeout(
        bus_factory: Callable[..., Bus], released: threading.Event) -> None:
    tcp_port, http_port, entered = stuck_node(bus_factory, released)
    hogs = [socket.create_connection(("127.0.0.1", tcp_port), timeout=WAIT) for _ in range(2)]
    try:
        hold_every_thread(hogs, entered)
        started = time.monotonic()
        answer = post_body(http_port, json.dumps(ask("price:quote", 0.5)).encode())
        took = time.monotonic() - started
        assert 0.4 < took < WAIT / 2, took
        [entry] = answer["result"]
        assert entry["error"]["type"] == "TimeoutError"
        assert "not started in time: the node runs at most 32 asks" in (
            entry["error"]["receiver"])
    finally:
        released.set()
        for hog in hogs:
            hog.close()


def test_asks_answered_at_their_timeout_still_hold_their_connection_s_threads(
        bus_factory: Callable[..., Bus], released: threading.Event) -> None:
    # the answer goes at the timeout, but the receiver still runs: the connection may not
    # start more than max_waiting asks until those threads are free
    port, _, entered = stuck_node(bus_factory, released)
    limit = WAIT_THREADS // 2  # max_waiting
    with (socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock,
          sock.makefile("rb") as reader):
        sock.sendall(b"".join(json.dumps(ask("slow:ask", 0.2, i)).encode() + b"\n"
                              for i in range(limit)))
        for _ in range(limit):  # each answered at its timeout
            [entry] = json.loads(reader.readline())["result"]
            assert entry["error"]["type"] == "TimeoutError"
        for _ in range(limit):
            assert entered.acquire(timeout=WAIT)  # every one of them still running
        sock.sendall(json.dumps(ask("slow:ask", 0.2, 99)).encode() + b"\n")
        refusal = json.loads(reader.readline())
        assert refusal["id"] == 99 and refusal["error"]["code"] == p.LIMIT_REACHED
        assert refusal["error"]["data"]["setting"] == "max_waiting"
        released.set()  # the threads come back: the connection may ask again
        deadline = time.monotonic() + WAIT
        while True:
            sock.sendall(json.dumps(ask("nobody:home", 1.0, 100)).encode() + b"\n")
            answer = json.loads(reader.readline())
            if "result" in answer or time.monotonic() > deadline:
                break
        assert answer["result"] == []


#: what a node says of its receivers when an ask's timeout ran out before they started
TOO_SHORT = "local receivers of price:quote (not started: the ask's timeout of 0s ran out " \
            "before they started)"


def _zero(form: str, id: int) -> Any:
    """An ask of ``price:quote`` with a timeout of 0, in ``form``."""
    if form == "named":
        return ask("price:quote", 0, id)
    if form == "by position":
        return {"jsonrpc": "2.0", "method": "ask", "id": id, "params": ["price:quote", [2], {}, 0]}
    if form == "1.0":
        return {"method": "ask", "id": id, "params": ["price:quote", [2], {}, 0]}
    return [ask("price:quote", 0, id)]  # a batch


@pytest.mark.parametrize("form", ["named", "by position", "1.0", "batch"])
@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_zero_timeout_is_answered_at_once_and_runs_no_receiver(
        bus_factory: Callable[..., Bus], scheme: str, form: str) -> None:
    """docs/protocol.md, ask: answered by ``timeout`` after the request came in; with 0,
    at once, and no receiver can have run. It was a race between the timer and the thread
    (the value, or a TimeoutError entry blaming the node's 32 ask threads, idle here)."""
    bus, port = serve(bus_factory, scheme)
    ran = threading.Semaphore(0)
    bus.subscribe("price:quote", lambda m: (ran.release(), m.args[0] * 9.5)[1], weak=False)
    node = bus.node_id

    def call(obj: Any) -> Any:
        if scheme == "http":
            return post_body(port, json.dumps(obj).encode())
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            return tcp_call(sock, obj)

    for i in range(20):
        answer = call(_zero(form, i))
        if form == "batch":
            [answer] = answer
        assert answer.get("error") is None, answer  # (1.0: null)
        assert answer["result"] == [{"error": {"type": "TimeoutError", "node": node,
                                               "message": "no answer within 0s",
                                               "receiver": TOO_SHORT}}], answer
    assert call(ask("nobody:home", 0))["result"] == []  # no receiver: nothing to wait for
    # one ask that waits: its receiver is the first to run (the threads take work in order)
    assert call(ask("price:quote", WAIT))["result"] == [{"value": 19.0}]
    assert ran.acquire(timeout=WAIT)
    assert not ran.acquire(blocking=False), "a receiver ran for an ask with a timeout of 0"


def test_an_ask_not_started_in_time_blames_busy_threads_only_when_they_are() -> None:
    """The ``TimeoutError`` entry of receivers an ask's timer found not started says why:
    the ask threads all busy, or a timeout too short for a thread to start them (0 is
    always that, busy threads or not)."""
    assert not_started(0.5) == " (not started: the ask's timeout of 0.5s ran out before " \
                               "they started)"
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> None:
        started.release()
        release.wait(WAIT)

    held = []
    try:
        while not WAITS.saturated:  # every thread busy (some may run already)
            held.append(WAITS.submit(hold))
            assert started.acquire(timeout=WAIT)
        assert not_started(0.5) == (f" (not started in time: the node runs at most "
                                    f"{WAIT_THREADS} asks at once)")
        assert "timeout of 0s ran out" in not_started(0)
    finally:
        release.set()
    for future in held:
        future.result(WAIT)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_receivers_not_started_by_the_timeout_never_run(
        scheme: str, bus_factory: Callable[..., Bus], released: threading.Event) -> None:
    """The answer at the timeout names the receiver still running; the receivers after it
    had not started, and do not start once it returns (docs/protocol.md, ask): they ran
    then, seconds after the asker had its answer without them."""
    bus, port = serve(bus_factory, scheme)
    held, late_ran = HeldReceiver(released), threading.Event()
    bus.subscribe("slow:op", held.slow, weak=False)
    bus.subscribe("*:op", lambda m: late_ran.set(), weak=False)  # after slow
    if scheme == "tcp":
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            answer = tcp_call(sock, ask("slow:op", 0.3))
    else:
        answer = post_body(port, json.dumps(ask("slow:op", 0.3)).encode())
    [entry] = answer["result"]
    assert entry["error"]["type"] == "TimeoutError" and "slow" in entry["error"]["receiver"]
    released.set()
    assert held.done.wait(WAIT)
    # the thread goes straight on to the next receiver, if any: a second is ample
    assert not late_ran.wait(1.0), "a receiver started after the ask was answered"


@pytest.mark.parametrize("timeout", [None, WAIT])
def test_asks_not_begun_when_their_connection_is_reset_never_run(
        bus_factory: Callable[..., Bus], released: threading.Event,
        timeout: float | None) -> None:
    """Asks from a connection that was reset ran later, one by one, holding the node's
    ask threads from other clients (and their arguments in memory meanwhile)."""
    port, _, entered = stuck_node(bus_factory, released)
    bus_of_node = WAITS  # (the pool the node runs asks on)
    hogs = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(2)]
    gone = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        hold_every_thread(hogs, entered)
        queued = len(bus_of_node._queue)
        gone.sendall(b"".join(json.dumps(ask("slow:ask", timeout, i)).encode() + b"\n"
                              for i in range(8)))  # these wait for a thread
        deadline = time.monotonic() + WAIT
        while len(bus_of_node._queue) < queued + 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(bus_of_node._queue) == queued + 8
        # the client is reset (killed with unread answers: its kernel resets the
        # connection; a plain close is a half-close, whose asks are still answered)
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()
        while len(bus_of_node._queue) > queued and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(bus_of_node._queue) == queued  # dropped with their connection
    finally:
        released.set()
        for hog in hogs:
            hog.close()
    assert not entered.acquire(timeout=0.5), "an ask of the closed connection ran"


@pytest.mark.parametrize("timeout", [None, WAIT])
def test_an_ask_begun_when_its_connection_is_reset_runs_all_its_receivers(
        bus_factory: Callable[..., Bus], released: threading.Event,
        timeout: float | None) -> None:
    """Only asks not begun are dropped with their connection: one whose first receiver
    runs goes on to the others (with a timeout, they were skipped, unsaid)."""
    bus, port = serve(bus_factory, "tcp")
    entered = threading.Event()
    ran: list[str] = []

    def first(message: Message) -> None:
        entered.set()
        released.wait(WAIT)
        ran.append("first")

    bus.subscribe("job:run", first, weak=False)
    bus.subscribe("job:run", lambda m: ran.append("second"), weak=False)
    admission = bus.transport("tcp").admission
    asker = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    asker.sendall(json.dumps(ask("job:run", timeout)).encode() + b"\n")
    assert entered.wait(WAIT)
    asker.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    asker.close()  # reset while the first receiver runs
    wait_for(lambda: admission.open == 0)  # the node took the connection for gone
    released.set()
    wait_for(lambda: len(ran) == 2)
    assert ran == ["first", "second"]


@pytest.mark.parametrize("timeout", [None, WAIT])
def test_http_asks_not_begun_when_their_connection_is_reset_never_run(
        bus_factory: Callable[..., Bus], released: threading.Event,
        timeout: float | None) -> None:
    """As over TCP: an HTTP ask waiting for a thread whose client is reset leaves the
    queue (it ran later, holding a thread from other clients)."""
    port, http_port, entered = stuck_node(bus_factory, released)
    hogs = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(2)]
    gone: list[socket.socket] = []
    try:
        hold_every_thread(hogs, entered)
        queued = len(WAITS._queue)
        for i in range(4):  # one HTTP request per connection, each waiting for a thread
            body = json.dumps(ask("slow:ask", timeout, i)).encode()
            sock = socket.create_connection(("127.0.0.1", http_port), timeout=WAIT)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                         b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            gone.append(sock)
        wait_for(lambda: len(WAITS._queue) == queued + 4)
        for sock in gone:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        wait_for(lambda: len(WAITS._queue) == queued)  # dropped with their connections
    finally:
        released.set()
        for hog in hogs:
            hog.close()
    assert not entered.acquire(timeout=0.5), "an ask of a reset connection ran"
