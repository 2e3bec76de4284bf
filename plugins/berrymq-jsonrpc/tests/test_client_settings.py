"""Three settings of the JSON-RPC transports that shape waiting, each shown to take effect
on real sockets (issue 8: a test per declared setting; the others are in test_limits,
test_liveness, test_status, test_conformance and the transport plugins' tests):

- ``timeout``: how long a client waits for a reply;
- ``max_get_wait``: the server's cap on one blocking ``get``, which the client's longer
  waits are made of;
- ``max_waiting``: how many requests that may wait run at once on one TCP connection, or
  in one HTTP batch.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from typing import Any, BinaryIO

import pytest
from berrymq_jsonrpc import protocol as p
from helpers import wait_for

from berrymq.bus import Bus
from berrymq.errors import SettingsError, TransportError
from berrymq.identifier import Identifier

Factory = Callable[..., Bus]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP listener that accepts connections, reads what comes and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_timeout_bounds_the_wait_for_a_reply(bus_factory: Factory, silent_server: str,
                                             scheme: str) -> None:
    transport = bus_factory(**{f"jsonrpc_{scheme}": {"timeout": 0.5}}).transport(scheme)
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"did not answer within 0\.5s"):
        transport.connect_oneway(f"{scheme}://{silent_server}", 60)
    assert 0.4 <= time.monotonic() - started < 5


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_max_get_wait_caps_a_blocking_get_on_the_server(bus_factory: Factory,
                                                        scheme: str) -> None:
    node = bus_factory(**{f"jsonrpc_{scheme}": {"max_get_wait": 0.3}})
    url = node.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    client = bus_factory().transport(scheme)
    connection = client.connect_via_queue(url, Identifier("job:*"), 60)
    started = time.monotonic()
    # one request asking to wait 30 s is answered Empty once the node's cap has passed
    with pytest.raises(queue.Empty):
        connection.call(p.METHOD_GET, {"token": connection.token, "block": True, "timeout": 30})
    assert 0.25 <= time.monotonic() - started < 5
    # a longer wait of the client is made of several capped requests, and still ends
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        connection.get(timeout=1.0)
    assert 0.9 <= time.monotonic() - started < 6
    # and a message that comes during such a wait is delivered
    threading.Timer(0.5, node.twitter, ("job:late",)).start()
    assert connection.get(timeout=10).id == "job:late"


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_get_refuses_a_block_that_is_no_flag_before_asking(bus_factory: Factory,
                                                             scheme: str) -> None:
    """``get(2)`` (meant as a timeout) waited for ever, re-asking every ``max_get_wait``;
    refused, as ``Queue.get(2)`` is, and the message stays for the next get."""
    node = bus_factory()
    url = node.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    connection = bus_factory().transport(scheme).connect_via_queue(url, Identifier("job:*"), 60)
    node.twitter("job:kept")
    with pytest.raises(TypeError, match="block for get must be True or False, got 2"):
        connection.get(2)  # type: ignore[arg-type]
    assert connection.get(1, 10).id == "job:kept"  # the standard library's 1 is True


@contextlib.contextmanager
def queue_session(node: Bus) -> Iterator[tuple[socket.socket, BinaryIO, str]]:
    """A raw TCP connection to ``node`` (served on a port of its own) with a
    ``connect_via_queue`` session of ``job:*`` opened on it: the socket, its reader and the
    token."""
    port = int(node.transport("tcp").listen("tcp://127.0.0.1:0").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            sock.makefile("rb") as reader:
        sock.sendall(b'{"jsonrpc":"2.0","method":"connect_via_queue",'
                     b'"params":{"identifier":"job:*"},"id":"open"}\n')
        yield sock, reader, json.loads(reader.readline())["result"]


def test_max_get_wait_is_what_a_raw_client_sees(bus_factory: Factory) -> None:
    with queue_session(bus_factory(jsonrpc_tcp={"max_get_wait": 0.2})) as (sock, reader, token):
        started = time.monotonic()
        sock.sendall(json.dumps({"jsonrpc": "2.0", "method": "get", "id": 2, "params": {
            "token": token, "block": True, "timeout": 60}}).encode() + b"\n")
        reply = json.loads(reader.readline())
    assert reply["error"]["code"] == p.EMPTY
    assert 0.15 <= time.monotonic() - started < 5


def blocking_gets(token: str, ids: range) -> list[dict[str, object]]:
    """Blocking ``get`` requests of the session ``token``, one per id."""
    return [{"jsonrpc": "2.0", "method": "get", "id": i,
             "params": {"token": token, "block": True, "timeout": 30}} for i in ids]


def test_max_waiting_caps_the_waiting_members_of_an_http_batch(bus_factory: Factory) -> None:
    """An HTTP connection carries one request at a time, but one batch may hold as many
    blocking gets as a body of max_size has room for (7,000 in 1 MiB), each waiting on
    the loop: 40 such connections took a node past 1 GiB and held its loop for seconds."""
    node = bus_factory(jsonrpc_http={"max_waiting": 3})
    port = int(node.transport("http").listen("http://127.0.0.1:0").rsplit(":", 1)[1])
    http = HTTPConnection("127.0.0.1", port, timeout=10)

    def post(payload: object) -> Any:
        http.request("POST", "/", json.dumps(payload), {"Content-Type": "application/json"})
        return json.loads(http.getresponse().read())

    token = post({"jsonrpc": "2.0", "method": "connect_via_queue", "id": "open",
                  "params": {"identifier": "job:*"}})["result"]
    for _ in range(3):
        node.twitter("job:done")
    now = {"jsonrpc": "2.0", "method": "get_nowait", "id": "now", "params": {"token": token}}
    # more waiting members than the cap: refused whole, at once, nothing taken
    answers = {answer["id"]: answer for answer in post([*blocking_gets(token, range(4)), now])}
    assert set(answers) == {0, 1, 2, 3, "now"}, answers
    for answer in answers.values():
        assert answer["error"]["code"] == p.LIMIT_REACHED, answer
        assert answer["error"]["data"]["setting"] == "max_waiting", answer
        assert answer["error"]["data"]["limit"] == 3, answer
    assert "smaller batches" in answers[0]["error"]["data"]["detail"], answers[0]
    # as many as the cap run: the three messages are still there for them
    answered = post(blocking_gets(token, range(10, 13)))
    assert [answer["id"] for answer in answered] == [10, 11, 12], answered
    assert all(answer["result"][0] == "job:done" for answer in answered), answered
    # a request alone is never over the cap
    node.twitter("job:late")
    assert post(blocking_gets(token, range(20, 21))[0])["result"][0] == "job:late"
    http.close()


def test_an_http_batch_of_more_blocking_gets_than_the_default_cap_is_refused(
        bus_factory: Factory) -> None:
    """Without a setting: the default cap (16) holds over HTTP, at once."""
    node = bus_factory()
    url = node.transport("http").listen("http://127.0.0.1:0")
    client = bus_factory().transport("http")
    connection = client.connect_via_queue(url, Identifier("job:*"), 60)
    port = int(url.rsplit(":", 1)[1])
    http = HTTPConnection("127.0.0.1", port, timeout=10)
    http.request("POST", "/", json.dumps(blocking_gets(connection.token, range(17))),
                 {"Content-Type": "application/json"})
    answers = json.loads(http.getresponse().read())
    http.close()
    assert len(answers) == 17, answers
    assert {answer["error"]["data"]["limit"] for answer in answers} == {16}, answers[0]


def test_max_waiting_caps_the_waiting_requests_of_one_connection(bus_factory: Factory) -> None:
    node = bus_factory(jsonrpc_tcp={"max_waiting": 2})
    with queue_session(node) as (sock, reader, token):
        gets = [{"jsonrpc": "2.0", "method": "get", "id": i,
                 "params": {"token": token, "block": True, "timeout": 30}} for i in range(3)]
        now = {"jsonrpc": "2.0", "method": "get_nowait", "id": "now", "params": {"token": token}}
        sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in [*gets, now]))
        # the third get is over the cap: refused at once, and the get_nowait behind it is
        # answered, while the first two still wait (30 s)
        answers = {}
        while len(answers) < 2:
            answer = json.loads(reader.readline())
            answers[answer["id"]] = answer
        assert set(answers) == {2, "now"}, answers
        refused = answers[2]["error"]
        assert refused["code"] == p.LIMIT_REACHED, refused
        assert refused["data"]["setting"] == "max_waiting" and refused["data"]["limit"] == 2
        assert answers["now"]["error"]["code"] == p.EMPTY
        # a message for the queue answers the first waiting get
        node.twitter("job:done")
        answer = json.loads(reader.readline())
    assert answer["id"] in (0, 1) and answer["result"][0] == "job:done", answer


def test_max_waiting_counts_each_waiting_member_of_a_batch(bus_factory: Factory) -> None:
    """A batch counted as one: 16 lines of 9,500 blocking gets kept 150,000 waits on one
    connection, past 1 GB, the loop held for a minute."""
    node = bus_factory(jsonrpc_tcp={"max_waiting": 3})

    def gets(ids: range) -> list[dict[str, object]]:
        return blocking_gets(token, ids)

    with queue_session(node) as (sock, reader, token):
        now = {"jsonrpc": "2.0", "method": "get_nowait", "id": "now", "params": {"token": token}}
        # a batch with more waiting members than the cap never runs: refused whole, at once
        sock.sendall(json.dumps([*gets(range(4)), now]).encode() + b"\n")
        answers = {answer["id"]: answer for answer in json.loads(reader.readline())}
        assert set(answers) == {0, 1, 2, 3, "now"}, answers
        for answer in answers.values():
            assert answer["error"]["code"] == p.LIMIT_REACHED, answer
            assert answer["error"]["data"]["setting"] == "max_waiting"
            assert answer["error"]["data"]["limit"] == 3
        # two waiting in a batch; a second batch of two would pass the cap: refused whole
        sock.sendall(json.dumps(gets(range(10, 12))).encode() + b"\n")
        sock.sendall(json.dumps(gets(range(20, 22))).encode() + b"\n")
        refused = json.loads(reader.readline())
        assert [answer["id"] for answer in refused] == [20, 21], refused
        assert all(answer["error"]["code"] == p.LIMIT_REACHED for answer in refused), refused
        # one more alone fits (two and one are the cap of three) and waits with them
        sock.sendall(json.dumps(gets(range(30, 31))[0]).encode() + b"\n")
        for _ in range(3):
            node.twitter("job:done")
        answered = [json.loads(reader.readline()) for _ in range(2)]
    batch = next(answer for answer in answered if type(answer) is list)
    alone = next(answer for answer in answered if type(answer) is dict)
    assert [answer["id"] for answer in batch] == [10, 11], batch
    assert all(answer["result"][0] == "job:done" for answer in [*batch, alone]), answered
    assert alone["id"] == 30, alone


def test_the_asks_of_a_batch_count_against_max_waiting_until_their_receivers_are_done(
        bus_factory: Factory) -> None:
    """A batch's asks answered at their timeout stopped counting with the answer, their
    receivers still running: three batches of 16 slow asks held all the ask threads of the
    node. A single ask counts until its receiver is done; so does each of a batch's."""
    node = bus_factory(jsonrpc_tcp={"max_waiting": 2})
    release = threading.Event()
    node.subscribe("slow:*", lambda message: release.wait(30), weak=False)

    def ask(i: int) -> dict[str, object]:
        return {"jsonrpc": "2.0", "method": "ask", "id": i,
                "params": {"identifier": "slow:x", "args": [], "timeout": 0.2}}

    with queue_session(node) as (sock, reader, _):
        try:
            sock.sendall(json.dumps([ask(1), ask(2)]).encode() + b"\n")
            answered = json.loads(reader.readline())  # at the timeout, receivers running
            assert [answer["id"] for answer in answered] == [1, 2], answered
            sock.sendall(json.dumps(ask(3)).encode() + b"\n")
            refused = json.loads(reader.readline())
            assert refused["id"] == 3 and refused["error"]["code"] == p.LIMIT_REACHED, refused
            assert refused["error"]["data"]["setting"] == "max_waiting"
        finally:
            release.set()

        def accepted() -> bool:  # once the two receivers are done, an ask runs again
            sock.sendall(json.dumps(ask(4)).encode() + b"\n")
            return "result" in json.loads(reader.readline())

        wait_for(accepted, 10, "an ask to run once the batch's receivers are done")


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_max_size_leaves_a_message_room(bus_factory: Factory, scheme: str) -> None:
    """A message may take ``max_size`` less the 512 bytes kept for the request around it:
    a ``max_size`` of 512 or less left no room (every send was refused as too large), so
    the smallest is 1024, named when the plugins load; 1024 itself is taken."""
    table = f"jsonrpc_{scheme}"
    for bad in (512, 1023):
        with pytest.raises(SettingsError, match=f"jsonrpc-{scheme}.max_size must be at least "
                                                f"1024 bytes .*, got {bad}"):
            bus_factory(**{table: {"max_size": bad}}).transport(scheme)
    assert bus_factory(**{table: {"max_size": 1024}}).transport(scheme).max_size == 1024
