"""``berrymq status``: what it prints of a node's ``/status``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.status import status_snapshot
from berrymq_jsonrpc.status_cli import format_status

from berrymq.bus import Bus
from berrymq.errors import QueueFull, RemoteError
from berrymq.identifier import Identifier
from berrymq.message import Message

TIMEOUT = 20.0


def refusing_node(buses: Callable[..., Bus]) -> tuple[Bus, str]:
    """A node (in this process, serving HTTP) whose ``/status`` has something in every
    field ``berrymq status`` might leave out: a duplicate, a refused session (over
    ``max_sessions = 1``) and a connection of its own that the peer refused a message on."""
    other = buses(jsonrpc_http={"queue_size": 1})
    other_url = other.transport("http").listen("http://127.0.0.1:0")
    buses().transport("http").connect_via_queue(other_url, Identifier("job:*"), 300)  # holds 1
    node = buses(jsonrpc_http={"max_sessions": 1})
    url = node.transport("http").listen("http://127.0.0.1:0")
    node.subscribe("job:*", lambda message: None, weak=False)
    link = node.transport("http").connect_oneway(other_url, 300)
    link.send(Message(Identifier("job:x"), (1,), {}))
    link.send(Message(Identifier("job:x"), (2,), {}))  # no room for it in the queue of 1
    with pytest.raises(QueueFull):
        link.flush(TIMEOUT)
    client = buses().transport("http").connect_oneway(url, 300)  # the one session allowed
    client.call(p.METHOD_SEND_MESSAGES, {"token": client.token, "messages": [
        ["job:x", [], {}, {"uid": "u-1"}], ["job:x", [], {}, {"uid": "u-1"}]]})  # a duplicate
    with pytest.raises(RemoteError):
        buses().transport("http").connect_oneway(url, 300)  # over max_sessions: refused
    return node, url


def test_status_shows_refusals_duplicates_and_a_connections_state(
        bus_factory: Callable[..., Bus]) -> None:
    node, _ = refusing_node(bus_factory)
    status = status_snapshot(node)
    assert status["refused"] == {"total": 1, "reasons": {"max_sessions": 1}}
    assert status["messages"]["duplicates"] == 1
    (connection,) = status["connections"]
    assert (connection["refused"], connection["state"]) == (1, "open")

    lines = format_status(status).splitlines()
    assert "refused:   1 (max_sessions: 1)" in lines
    (messages,) = [line for line in lines if line.startswith("messages:")]
    assert messages.endswith("  duplicates 1")
    table = lines[lines.index("connections:") + 1:lines.index("connections:") + 3]
    assert table[0].split() == ["ADDRESS", "STYLE", "AGE", "PENDING", "SENT", "LOST",
                                "REFUSED", "STATE"]
    assert table[1].split()[0] == connection["address"]
    assert table[1].split()[-2:] == ["1", "open"]


def test_status_of_a_quiet_node_says_none_was_refused(bus_factory: Callable[..., Bus]) -> None:
    node = bus_factory()
    node.transport("http").listen("http://127.0.0.1:0")
    lines = format_status(status_snapshot(node)).splitlines()
    assert "refused:   0" in lines
    assert next(line for line in lines if line.startswith("messages:")).endswith("duplicates 0")

