"""What a node refuses is reported without flooding its log, and a client that does not
read its answers cannot make a TCP node hold them without end (issue 10)."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from probe_tools import post_body

from berrymq.bus import Bus
from berrymq.stats import stats_for

WAIT = 10.0


def line(method: str, params: dict[str, Any], id: Any = None) -> bytes:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if id is not None:
        request["id"] = id
    return json.dumps(request).encode() + b"\n"


def call(sock: socket.socket, method: str, **params: Any) -> Any:
    sock.sendall(line(method, params, "call"))
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, "the node closed the connection"
        data += chunk
    return json.loads(data)["result"]


@contextlib.contextmanager
def queue_and_oneway(bus: Bus) -> Iterator[tuple[socket.socket, str, str]]:
    """A TCP connection to a node of ``bus``, with a queue session of ``job:*`` and a
    one-way session on it: (the socket, the queue's token, the one-way token)."""
    url = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), WAIT) as sock:
        sock.settimeout(WAIT)
        yield (sock, call(sock, "connect_via_queue", identifier="job:*", ttl=600),
               call(sock, "connect_oneway", ttl=600))


def test_refused_notifications_are_counted_and_logged_once_per_burst(
        bus_factory: Callable[..., Bus], caplog: pytest.LogCaptureFixture) -> None:
    bus = bus_factory(jsonrpc_tcp={"queue_size": 10})
    with queue_and_oneway(bus) as (sock, queue, token):
        with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
            # 1,000 notifications at a queue of 10: no answer can tell the sender
            sock.sendall(b"".join(line("send_message", {"token": token, "identifier": "job:x",
                                                        "args": [i]}) for i in range(1000)))
            assert call(sock, "get_nowait", token=queue)[0] == "job:x"  # all were read
    refused = stats_for(bus).losses()
    assert refused == {"refused: queue full": 990}, refused
    logged = [r.getMessage() for r in caplog.records if "was refused" in r.getMessage()]
    assert 1 <= len(logged) <= 2, logged
    assert "queue_size" in logged[0]  # it names the setting


def test_a_client_that_reads_no_answers_is_not_read_on(bus_factory: Callable[..., Bus]) -> None:
    bus = bus_factory()
    url = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    request = line("get_nowait", {"token": "x" * 43}, 1)  # each answered -32001
    chunk = request * 1000
    sent = 0
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), WAIT) as sock:
        sock.settimeout(1.0)
        until = time.monotonic() + 20
        try:  # send until the node stops reading (a send blocks 1 s), 20 s at most
            while time.monotonic() < until and sent < 256 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except TimeoutError:
            pass
        # answers waiting at the node: at most its high-water mark, the kernel's buffers
        # and one read's worth; not everything sent
        assert sent < 64 << 20, f"the node read {sent >> 20} MiB without its answers read"
        sock.settimeout(WAIT)
        count = 0
        wanted = sent // len(request)  # every whole request sent is answered, in the end
        buffer = b""
        last = b""
        while count < wanted:
            data = sock.recv(1 << 20)
            assert data, f"closed after {count} of {wanted} answers"
            buffer += data
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            count += len(lines)
            last = lines[-1] if lines else last
        assert json.loads(last)["error"]["code"] == p.UNKNOWN_TOKEN


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_batch_with_a_blocking_get_holds_up_no_other_request(
        bus_factory: Callable[..., Bus], scheme: str) -> None:
    bus = bus_factory()
    port = int(bus.transport(scheme).listen(f"{scheme}://127.0.0.1:0").rsplit(":", 1)[1])
    opened = json.loads(line("connect_via_queue", {"identifier": "job:*", "ttl": 60}, 0))
    token = post_body(port, json.dumps(opened).encode())["result"] if scheme == "http" else None
    with socket.create_connection(("127.0.0.1", port), WAIT) as waiter:
        waiter.settimeout(WAIT)
        if scheme == "tcp":
            token = call(waiter, "connect_via_queue", identifier="job:*", ttl=60)
        batch = json.dumps([json.loads(line("get", {"token": token, "timeout": 3}, 1)),
                            json.loads(line("get_nowait", {"token": token}, 2))]).encode()
        if scheme == "tcp":
            waiter.sendall(batch + b"\n")
        else:  # the POST waits for its answer on this connection
            waiter.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\n\r\n" % len(batch) + batch)
        time.sleep(0.2)  # the batch is read and waits (nothing to poll on from outside)
        asked = time.monotonic()
        other = json.loads(line("get_nowait", {"token": token}, "other"))
        if scheme == "tcp":
            with socket.create_connection(("127.0.0.1", port), WAIT) as sock:
                sock.settimeout(WAIT)
                sock.sendall(json.dumps(other).encode() + b"\n")
                answer = json.loads(sock.makefile("rb").readline())
        else:
            answer = post_body(port, json.dumps(other).encode())
        took = time.monotonic() - asked
        assert answer["error"]["code"] == p.EMPTY, answer
        # held up, it would have been answered only once the batch's get had waited its
        # 3 s, after the batch: the batch's answer is not here yet (a condition, not a
        # guess of how fast a loaded machine answers; the bound was 1.5 s)
        unanswered = not select.select([waiter], [], [], 0)[0]
        assert unanswered, f"a request on another connection waited {took:.1f} s, for the batch"
        waiter.settimeout(WAIT)
        data = b""
        while b"]" not in data:  # the batch is answered once its get has waited
            data += waiter.recv(65536)
        assert b'"id":1' in data.replace(b" ", b"") and b'"id":2' in data.replace(b" ", b"")


def test_notifications_with_no_open_session_are_counted_and_logged(
        bus_factory: Callable[..., Bus], caplog: pytest.LogCaptureFixture) -> None:
    bus = bus_factory()
    url = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), WAIT) as sock:
        sock.settimeout(WAIT)
        token = call(sock, "connect_oneway", ttl=600)
        assert call(sock, "close_connection", token=token) == "ok"
        with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
            # 100 notifications and a batch of 3 messages with the closed token, 50 with a
            # token no node would issue: none is answered, none is delivered
            sock.sendall(b"".join(line("send_message", {"token": token, "identifier": "job:x"})
                                  for _ in range(100)))
            sock.sendall(line("send_messages", {"token": token, "messages": [
                ["job:x", [], {}], ["job:y", [], {}], ["job:z", [], {}]]}))
            sock.sendall(b"".join(line("send_message", {"token": "?" * 300, "identifier": "job:x"})
                                  for _ in range(50)))
            # what never became a message is not counted (invalid params): a bad
            # identifier, one malformed member of two, messages that are no list
            sock.sendall(b"".join(line("send_message", {"token": token, "identifier": "te*:x"})
                                  for _ in range(10)))
            sock.sendall(line("send_messages", {"token": token, "messages": [
                ["job:x", [], {}], {"identifier": "job:x"}]}))
            sock.sendall(line("send_messages", {"token": token, "messages": "job:x"}))
            assert call(sock, "connect_oneway", ttl=600)  # all before it were read
    assert stats_for(bus).losses() == {"refused: unknown or expired token": 154}
    logged = [r.getMessage() for r in caplog.records if "was refused" in r.getMessage()]
    assert 1 <= len(logged) <= 2, logged
    assert "Unknown or expired token (-32001)" in logged[0]


def test_each_kind_of_refusal_is_logged_with_its_own_count(
        bus_factory: Callable[..., Bus], caplog: pytest.LogCaptureFixture) -> None:
    bus = bus_factory(jsonrpc_tcp={"queue_size": 1, "max_size": 4096})
    with queue_and_oneway(bus) as (sock, queue, token):
        with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
            sock.sendall(b"".join(line("send_message", {"token": token, "identifier": "job:x"})
                                  for _ in range(11)))  # 10 refused by the full queue
            sock.sendall(line("send_message", {"token": token, "identifier": "job:big",
                                               "args": ["x" * 3800]}))  # over max_size less 512
            assert call(sock, "get_nowait", token=queue)[0] == "job:x"
        bus.transport("tcp").close()  # the closing lines of both bursts
    logged = [r.getMessage() for r in caplog.records if "was refused" in r.getMessage()]
    full = [text for text in logged if "queue_size" in text]
    large = [text for text in logged if "max_size" in text]
    assert len(full) + len(large) == len(logged) and large, logged
    assert not any("such events" in text for text in large), large  # one refusal, its own line
    assert full[-1].endswith("(9 such events since the last line)"), full
