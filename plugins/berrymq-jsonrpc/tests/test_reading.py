"""``max_reading_bytes``: the bytes of requests a node holds while it reads them, every
connection together (berrymq_jsonrpc.reading).

Hundreds of connections each holding most of a 1 MiB request took 1 MiB of the node each
(300 of them: 356 MB; the default 10,000 connections would have taken 10 GB). Now a
request over 64 KiB waits for a share of the cap before more of it is read; the node's
memory stays near the cap, small requests are answered meanwhile, and every waiting
request is read and answered once the others are whole.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.reading import FREE_READING, ReadingBytes
from probe_tools import (
    MIB,
    WAIT,
    Raw,
    Sampler,
    http_answer,
    http_post,
    port_of,
    proc_status,
    request,
    start_node,
)

CONNECTIONS = 200
HELD_BACK = 4096  # the end of each request, sent once all of them are begun


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def push(pending: dict[socket.socket, bytes], seconds: float) -> None:
    """Write what is pending on each (non-blocking) socket, as far as the node reads it,
    for up to ``seconds`` or until all of it is written."""
    with selectors.DefaultSelector() as selector:
        for sock in pending:
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + seconds
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(min(left, 0.2)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    sent = sock.send(pending[sock])
                except BlockingIOError:
                    continue
                pending[sock] = pending[sock][sent:]
                if not pending[sock]:
                    del pending[sock]
                    selector.unregister(sock)


def answer_of(sock: socket.socket, scheme: str) -> Any:
    """The node's answer on ``sock``: a JSON line, or an HTTP answer's JSON body."""
    sock.setblocking(True)
    sock.settimeout(WAIT)
    if scheme == "http":
        return json.loads(http_answer(sock)[1])
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, f"the node closed the connection, after {data[:200]!r}"
        data += chunk
    return json.loads(data)


def send_message(token: str, i: int, scheme: str) -> bytes:
    """A ``send_message`` request of about 1 MiB: a TCP line, or an HTTP POST."""
    body = json.dumps(request("send_message", {"token": token, "identifier": "big:x",
                                               "args": [i, "x" * (MIB - 1000)]}, i)).encode()
    if scheme == "tcp":
        return body + b"\n"
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_many_large_requests_begun_wait_for_max_reading_bytes_and_all_are_answered(
        scheme: str, spawn: Callable[..., Any], tmp_path: Path, socks: list[socket.socket],
        wait_for: Callable[..., Any]) -> None:
    node = start_node(spawn, tmp_path, max_reading_bytes=4 * MIB)
    url = node("serve", addr=f"{scheme}://127.0.0.1:0")
    node("slow", pattern="big:x", delay=0)  # counts what is delivered
    opener = Raw(port_of(node("serve", addr="tcp://127.0.0.1:0")))
    socks.append(opener.sock)
    # (a session serves the connections of its own transport)
    token = (opener.call("connect_oneway", ttl=600) if scheme == "tcp" else
             http_post(port_of(url), request("connect_oneway", {"ttl": 600}))["result"])
    requests = {}
    for i in range(CONNECTIONS):
        sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=WAIT)
        sock.setblocking(False)
        socks.append(sock)
        requests[sock] = send_message(token, i, scheme)
    sampler = Sampler(node.process.pid)
    # every request but its last bytes: what the node reads of them, it holds
    push({sock: data[:-HELD_BACK] for sock, data in requests.items()}, 3.0)
    opener.send(request("connect_oneway", {"ttl": 60}, "small"))  # answered meanwhile
    assert "result" in opener.line()
    # 4 MiB of shares, and a part of each other request (TCP 128 KiB, HTTP 256 KiB at
    # most); without the cap the node reads all 200 MiB: the growth is watched a while
    # longer for it
    watched = time.monotonic() + 2.0
    while sampler.peak[0] - sampler.before[0] < 80 and time.monotonic() < watched:
        time.sleep(0.05)
    figure = sampler.stop()
    assert figure["rss_peak_mib"] - figure["rss_before_mib"] < 80, figure

    push({sock: data[-HELD_BACK:] for sock, data in requests.items()}, 60.0)
    answers = [answer_of(sock, scheme) for sock in requests]
    assert [answer.get("result", answer) for answer in answers] == ["ok"] * CONNECTIONS
    wait_for(lambda: node("count", pattern="big:x") == CONNECTIONS, what="every message delivered")
    log = "".join(node.stderr)
    assert "max_reading_bytes (4194304 bytes)" in log, log


def test_a_share_held_by_a_stalled_request_is_given_back_at_its_read_timeout(
        spawn: Callable[..., Any], tmp_path: Path, socks: list[socket.socket],
        wait_for: Callable[..., Any]) -> None:
    node = start_node(spawn, tmp_path, max_reading_bytes=2 * MIB, read_timeout=3)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    node("slow", pattern="big:x", delay=0)
    opener = Raw(port)
    socks.append(opener.sock)
    token = opener.call("connect_oneway", ttl=600)
    stalled = []
    for i in range(2):  # two requests begun and never ended hold the whole cap
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        socks.append(sock)
        sock.sendall(send_message(token, i, "tcp")[:FREE_READING * 2])
        stalled.append(sock)
    waiting = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    socks.append(waiting)
    waiting.setblocking(False)
    begun = time.monotonic()
    push({waiting: send_message(token, 2, "tcp")}, 30.0)  # read once a share is back
    assert answer_of(waiting, "tcp")["result"] == "ok"
    assert time.monotonic() - begun > 2, "the third request did not wait for a share"
    for sock in stalled:  # closed at their deadline, answered first
        answer = answer_of(sock, "tcp")
        assert answer["error"]["code"] == p.LIMIT_REACHED, answer
        assert answer["error"]["data"]["setting"] == "read_timeout", answer
    wait_for(lambda: node("count", pattern="big:x") == 1, what="the message delivered")


def test_shares_are_held_in_the_order_asked_and_one_always_fits() -> None:
    loop = asyncio.new_event_loop()
    woken: list[str] = []
    reading = ReadingBytes()
    try:
        big = reading.ask(10 * MIB, MIB, loop, lambda: woken.append("big"))
        assert big.held  # over the cap, but alone: held
        a = reading.ask(MIB, 2 * MIB, loop, lambda: woken.append("a"))
        b = reading.ask(1, 2 * MIB, loop, lambda: woken.append("b"))
        assert a.waiting and b.waiting  # b fits no more than a does, and comes after it
        reading.give_back(a)  # a leaves the line before it was held
        reading.give_back(big)
        loop.run_until_complete(asyncio.sleep(0))
        assert woken == ["b"] and b.held and reading.total == 1
        reading.give_back(b)
        reading.give_back(b)  # twice: once counted
        assert reading.total == 0
    finally:
        loop.close()


ASKERS = 40


@pytest.mark.parametrize(("scheme", "form"), [("tcp", "alone"), ("tcp", "in a batch"),
                                               ("http", "alone")])
def test_large_asks_waiting_for_a_thread_hold_no_more_than_max_reading_bytes(
        scheme: str, form: str, spawn: Callable[..., Any], tmp_path: Path,
        socks: list[socket.socket], wait_for: Callable[..., Any]) -> None:
    """Every ask thread of the node busy, 40 clients each ask with a 1 MiB argument: the
    asks read and waiting for a thread kept their requests (40 MiB and more as Python
    objects); now a request over 64 KiB keeps its share until it begins, so the others are
    not read meanwhile. Each is answered once a thread is free."""
    node = start_node(spawn, tmp_path, max_reading_bytes=4 * MIB)
    url = node("serve", addr=f"{scheme}://127.0.0.1:0")
    tcp = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    node("sleepy", pattern="slow:x", delay=5.0)
    node("sleepy", pattern="big:x", delay=0)
    busy = []
    for _ in range(2):  # 32 asks of 5 s: every ask thread of the node (16 per connection)
        raw = Raw(tcp)
        socks.append(raw.sock)
        raw.send(*[request("ask", {"identifier": "slow:x", "args": ["."]}, i) for i in range(16)])
        busy.append(raw)
    askers = {}
    for i in range(ASKERS):
        sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=WAIT)
        sock.setblocking(False)
        socks.append(sock)
        ask = request("ask", {"identifier": "big:x", "args": ["x" * (MIB - 1000)]}, i)
        body = json.dumps(ask if form == "alone" else [ask]).encode()
        askers[sock] = body + b"\n" if scheme == "tcp" else (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)
    before, _ = proc_status(node.process.pid)
    push(dict(askers), 2.0)  # while the ask threads are busy
    # 4 MiB of asks waiting, 128 KiB (TCP) or 256 KiB (HTTP) of each other one; without
    # the cap all 40 MiB are read, and held as Python objects too: what it read it holds,
    # watched a while longer for that (the ask threads are busy 5 s in all)
    watched = time.monotonic() + 1.5
    while (grown := proc_status(node.process.pid)[0] - before) < 35 \
            and time.monotonic() < watched:
        time.sleep(0.05)
    assert grown < 35, grown  # (TCP 13 MiB, HTTP 22; without the cap 48 and 50)
    push(dict(askers), 60.0)
    answers = [answer_of(sock, scheme) for sock in askers]
    answers = [answer if form == "alone" else answer[0] for answer in answers]
    assert [answer.get("result", answer) for answer in answers] == [
        [{"value": MIB - 1000}]] * ASKERS
    for raw in busy:  # and the 32 that held the threads
        assert sorted(raw.line()["id"] for _ in range(16)) == list(range(16))


def test_shares_are_given_back_on_a_half_close_after_blanks_and_by_a_blocking_get(
        spawn: Callable[..., Any], tmp_path: Path, socks: list[socket.socket]) -> None:
    """Two ways a share outlived what it was for, found by a review: a line of blanks
    ended by a half-close dropped its share unreturned (two such connections held a cap of
    2 MiB for good: no large request was read again), and a blocking get kept its share
    until answered (up to 30 s a time) where it begins at once."""
    node = start_node(spawn, tmp_path, max_reading_bytes=2 * MIB)
    port = port_of(node("serve", addr="tcp://127.0.0.1:0"))
    opener = Raw(port)
    socks.append(opener.sock)
    token = opener.call("connect_oneway", ttl=600)
    queue = opener.call("connect_via_queue", identifier="nothing:*", ttl=600)
    for _ in range(2):
        blanks = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        socks.append(blanks)
        blanks.sendall(b" " * 200_000)
        blanks.shutdown(socket.SHUT_WR)
        assert blanks.recv(100) == b""  # nothing to answer: closed
    getter = Raw(port)
    socks.append(getter.sock)
    for i in range(2):  # blocking gets of 300 KB each (their ids), waiting 20 s
        getter.send(request("get", {"token": queue, "timeout": 20}, f"{i}" + "x" * 300_000))
    sender = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    socks.append(sender)
    sender.setblocking(False)
    push({sender: send_message(token, 0, "tcp")}, 5.0)
    assert answer_of(sender, "tcp")["result"] == "ok"  # read and answered at once
