"""Deeply nested messages on the wire (docs/protocol.md, "Messages on the wire"): a text
nested deeper than the limit is refused up front, naming it; anything a node accepts it
can write again; and a message a remote queue cannot write is refused, counted and
logged once per burst, never accepted with "ok" and dropped with only a traceback."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from helpers import serve
from probe_tools import post_body

import berrymq
from berrymq.bus import Bus
from berrymq.stats import stats_for
from berrymq.wire import MAX_DEPTH, MAX_MESSAGE_DEPTH

SCHEMES = ["tcp", "http"]
WAIT = 10.0


class Client:
    """Requests as texts, over one TCP connection or one POST each."""

    def __init__(self, scheme: str, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), WAIT) if scheme == "tcp" else None

    def send(self, text: str) -> Any:
        """The answer to ``text``, parsed; None for a notification."""
        if self.sock is None:
            return post_body(self.port, text.encode()) if '"id"' in text else _no_answer(self.port, text)
        self.sock.sendall(text.encode() + b"\n")
        if '"id"' not in text:
            return None  # the node answers nothing (the next answer shows it was read)
        data = b""
        while not data.endswith(b"\n"):
            chunk = self.sock.recv(65536)
            assert chunk, "closed without an answer"
            data += chunk
        return json.loads(data)

    def call(self, method: str, **params: Any) -> Any:
        return self.send(json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def _no_answer(port: int, text: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(text) + text.encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 204 ")


def send_nested(client: Client, token: str, depth: int, id: int | None = 7) -> Any:
    """send_message of deep:x whose args array nests ``depth`` levels (so the message's own
    form nests depth + 1, and the request depth + 2)."""
    args = "[" * depth + "]" * depth
    ident = "" if id is None else f',"id":{id}'
    params = f'"token":"{token}","identifier":"deep:x","args":{args}'
    return client.send('{"jsonrpc":"2.0","method":"send_message","params":{' + params + "}" + ident + "}")


@pytest.fixture(params=SCHEMES)
def setup(request: pytest.FixtureRequest, bus_factory: Callable[..., Bus]) -> Any:
    bus, port = serve(bus_factory, request.param)
    client = Client(request.param, port)
    queue = client.call("connect_via_queue", identifier="deep:*", ttl=60)["result"]
    yield bus, client, queue
    client.close()


@pytest.mark.parametrize("depth", [980, MAX_DEPTH - 1])  # the report's, and just past the limit
def test_a_message_nested_past_the_limit_is_refused_up_front_naming_it(setup: Any, depth: int) -> None:
    bus, client, queue = setup
    assert send_nested(client, queue, depth) == {"jsonrpc": "2.0", "id": None, "error": {
        "code": p.PARSE_ERROR, "message": "Parse error", "data": {
            "limit": MAX_DEPTH, "detail": f"the text nests arrays and objects more than "
                                          f"{MAX_DEPTH} levels deep, the limit"}}}
    assert client.call("get_nowait", token=queue)["error"]["code"] == p.EMPTY  # nothing taken
    assert stats_for(bus).losses() == {}  # nothing accepted, so nothing lost


def test_the_deepest_message_crosses_a_remote_queue_intact(setup: Any) -> None:
    _, client, queue = setup
    depth = MAX_MESSAGE_DEPTH - 1  # the args array: the message itself nests one more
    assert send_nested(client, queue, depth)["result"] == "ok"
    taken = client.call("get_nowait", token=queue)["result"]
    assert taken == ["deep:x", json.loads("[" * depth + "]" * depth), {}]


def test_a_message_a_remote_queue_cannot_write_is_refused_counted_and_logged_once(
        setup: Any, caplog: pytest.LogCaptureFixture) -> None:
    # read (the request nests MAX_DEPTH - 2 levels) but one level too deep to be written
    # in every wire form, a get's answer in a batch among them
    bus, client, queue = setup
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            send_nested(client, queue, MAX_MESSAGE_DEPTH, id=None)  # notifications
        error = send_nested(client, queue, MAX_MESSAGE_DEPTH)["error"]
    assert error["code"] == p.QUEUE_FULL and error["data"]["refused"] == [0]
    assert error["data"]["detail"] == (f"message deep:x cannot go to a remote queue: it is nested "
                                       f"more than {MAX_MESSAGE_DEPTH} levels deep, the limit")
    assert client.call("get_nowait", token=queue)["error"]["code"] == p.EMPTY
    assert stats_for(bus).losses() == {"refused: not writable as JSON": 4}
    assert not [r for r in caplog.records if r.exc_info], caplog.text  # no traceback
    told = [r for r in caplog.records if "was refused" in r.getMessage()]
    assert 1 <= len(told) <= 2 and "nested more than" in told[0].getMessage()


def test_a_local_sender_hears_that_a_remote_queue_cannot_write_its_message(setup: Any) -> None:
    bus, client, queue = setup
    with pytest.raises(berrymq.QueueFull, match="deep:x cannot go to a remote queue: it is not "
                                                "JSON") as caught:
        bus.twitter("deep:x", object())
    assert isinstance(caught.value, TypeError)  # as it was: what JSON cannot hold
    assert client.call("get_nowait", token=queue)["error"]["code"] == p.EMPTY
