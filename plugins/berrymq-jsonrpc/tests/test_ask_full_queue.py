"""A full queue and ``ask`` (docs/protocol.md, ask; docs/delivery.md): a queue is not a
replying receiver, so one that refuses the request (a ``connect_via_queue`` client that
stopped taking its messages) must not cost the askers the replies of the node's
receivers. Its refusal is an error entry of type ``QueueFull`` naming the queue, after
the replies, and is counted on the node as a refused message is. The node answered every
such ask with *Internal error* (-32603), over every transport and every form of the call,
and a berryMQ client's ``ask`` got one error entry for the whole node."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc.outbox import REFUSED
from helpers import serve
from probe_tools import post_body, tcp_call

from berrymq import ReplyError
from berrymq.bus import Bus
from berrymq.stats import stats_for

WAIT = 15.0
QUEUE_SIZE = 3


def call(scheme: str, port: int, obj: Any) -> Any:
    """One request, on a connection of its own; the answer, parsed."""
    if scheme == "http":
        return post_body(port, json.dumps(obj).encode())
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        return tcp_call(sock, obj)


def node_with_a_full_queue(bus_factory: Callable[..., Bus], scheme: str) -> tuple[Bus, int]:
    """A node (its bus and port) whose ``price:quote`` receiver answers ``9.5 * args[0]``,
    and where a client's session queue of ``*`` is full (``queue_size`` messages)."""
    bus, port = serve(bus_factory, scheme, queue_size=QUEUE_SIZE)
    bus.subscribe("price:quote", lambda m: m.args[0] * 9.5, weak=False)
    token = call(scheme, port, {"jsonrpc": "2.0", "method": "connect_via_queue", "id": 1,
                                "params": {"identifier": "*", "ttl": 600}})["result"]
    filled = call(scheme, port, {"jsonrpc": "2.0", "method": "send_messages", "id": 2, "params": {
        "token": token, "messages": [["price:fill", [i], {}] for i in range(QUEUE_SIZE)]}})
    assert filled["result"] == "ok"  # full now, and nothing refused yet
    return bus, port


def assert_refused(entry: Any, node: Bus) -> None:
    """``entry`` is the full session queue's refusal, as it crosses."""
    error = entry["error"]
    assert error["type"] == "QueueFull" and error["receiver"] == "queue *:*", error
    assert "queue *:* is full" in error["message"] and "queue_size" in error["message"]
    assert error["node"] == node.node_id


#: the forms of the call: named with and without a timeout, by position, JSON-RPC 1.0
FORMS = {
    "named": {"jsonrpc": "2.0", "params": {"identifier": "price:quote", "args": [2],
                                           "timeout": WAIT}},
    "named, no timeout": {"jsonrpc": "2.0", "params": {"identifier": "price:quote",
                                                       "args": [2]}},
    "by position": {"jsonrpc": "2.0", "params": ["price:quote", [2], {}, WAIT]},
    "1.0": {"params": ["price:quote", [2], {}, WAIT]},
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_ask_a_full_queue_refuses_gets_the_replies_and_a_queue_full_entry(
        bus_factory: Callable[..., Bus], scheme: str, form: str,
        caplog: pytest.LogCaptureFixture) -> None:
    node, port = node_with_a_full_queue(bus_factory, scheme)
    with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
        answer = call(scheme, port, {"method": "ask", "id": 3, **FORMS[form]})
    assert "error" not in answer or answer["error"] is None, answer  # (1.0: null)
    reply, refusal = answer["result"]
    assert reply == {"value": 19.0}
    assert_refused(refusal, node)
    # counted on the node, and logged, as a refused message is (docs/delivery.md)
    assert stats_for(node).losses() == {REFUSED: 1}
    assert any("was refused" in r.getMessage() and "queue *:* is full" in r.getMessage()
               for r in caplog.records), caplog.text


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_berrymq_client_asking_through_connect_oneway_gets_the_replies(
        bus_factory: Callable[..., Bus], scheme: str) -> None:
    node, port = node_with_a_full_queue(bus_factory, scheme)
    client = bus_factory()
    client.transport(scheme).connect_oneway(f"{scheme}://127.0.0.1:{port}", 60)
    reply, refusal = client.ask("price:quote", 2, timeout=WAIT)
    assert reply == 19.0
    assert isinstance(refusal, ReplyError) and refusal.exception_type == "QueueFull"
    assert refusal.receiver == "queue *:*" and refusal.node == node.node_id
    assert stats_for(node).losses() == {REFUSED: 1}
