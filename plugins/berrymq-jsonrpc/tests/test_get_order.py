"""The order of a node's remote queues (SPEC 4: first in, first out; docs/protocol.md:
the requests of one TCP connection run in order): blocking ``get``s waiting on one queue
take the messages in the order the gets came, and a ``get`` (or ``ask``) pipelined behind
``send_message``s on one connection begins once they ran (both found by an outside audit:
the waiting gets were woken all at once, in a set's order, and a get was begun as soon as
it was read, before the messages sent ahead of it); over HTTP, an ``ask`` or ``get`` after a
``send_message`` on one keep-alive connection begins once that message was delivered."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import serve
from probe_tools import http_answer, send_request

from berrymq.bus import Bus

WAIT = 10.0
GETS = 6


def rpc(method: str, id: Any, **params: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": id}).encode()


class Client:
    """One connection to a node, requests written as they are given, answers read as
    asked for (TCP: a line each; HTTP: one answer each)."""

    def __init__(self, scheme: str, port: int) -> None:
        self.scheme = scheme
        self.sock = socket.create_connection(("127.0.0.1", port), WAIT)
        self.lines = self.sock.makefile("rb")

    def send(self, body: bytes) -> None:
        send_request(self.sock, self.scheme, body)

    def answer(self) -> Any:
        if self.scheme == "tcp":
            return json.loads(self.lines.readline())
        status, body = http_answer(self.sock)
        assert status == 200, body
        return json.loads(body)

    def call(self, body: bytes) -> Any:
        self.send(body)
        return self.answer()["result"]

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


def _node_with_queue(bus_factory: Callable[..., Bus], scheme: str
                     ) -> tuple[Bus, int, str, str, Client]:
    """A node, a queue session on it (``order:*``), a oneway session, and a client."""
    bus, port = serve(bus_factory, scheme)
    client = Client(scheme, port)
    queue = client.call(rpc("connect_via_queue", 1, identifier="order:*", ttl=60))
    oneway = client.call(rpc("connect_oneway", 2, ttl=60))
    return bus, port, queue, oneway, client


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_blocking_gets_on_one_queue_take_its_messages_in_the_order_they_came(
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any], scheme: str) -> None:
    """Each get on a connection of its own, begun one after the other; then as many
    messages: the get that came first takes the first message, and so on."""
    bus, port, queue, oneway, client = _node_with_queue(bus_factory, scheme)
    store = bus.transport(scheme).service.sessions[queue].queue  # type: ignore[attr-defined]
    getters = [Client(scheme, port) for _ in range(GETS)]
    try:
        for i, getter in enumerate(getters):
            getter.send(rpc("get", f"g{i}", token=queue, timeout=WAIT))
            wait_for(lambda i=i: store.waiting == i + 1, WAIT, f"get {i} to wait")
        for i in range(GETS):
            assert client.call(rpc("send_message", f"s{i}", token=oneway,
                                   identifier="order:x", args=[i])) == "ok"
        assert [getter.answer()["result"] for getter in getters] == [
            ["order:x", [i], {}] for i in range(GETS)]
    finally:
        for getter in getters:
            getter.close()
        client.close()


def test_gets_pipelined_on_one_connection_take_messages_in_their_order(
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any]) -> None:
    bus, port, queue, oneway, client = _node_with_queue(bus_factory, "tcp")
    store = bus.transport("tcp").service.sessions[queue].queue  # type: ignore[attr-defined]
    getter = Client("tcp", port)
    try:
        getter.send(b"\n".join(rpc("get", f"g{i}", token=queue, timeout=WAIT)
                               for i in range(GETS)))
        wait_for(lambda: store.waiting == GETS, WAIT, "every get to wait")
        for i in range(GETS):
            client.call(rpc("send_message", f"s{i}", token=oneway, identifier="order:x",
                            args=[i]))
        answers = {answer["id"]: answer["result"]
                   for answer in (getter.answer() for _ in range(GETS))}
        assert answers == {f"g{i}": ["order:x", [i], {}] for i in range(GETS)}
    finally:
        getter.close()
        client.close()


@pytest.mark.parametrize("waiting", ["get", "ask"])
def test_a_waiting_request_pipelined_behind_messages_begins_once_they_ran(
        bus_factory: Callable[..., Bus], waiting: str) -> None:
    """300 pairs of send_message and get (or ask) written at once on one TCP connection:
    each get found its message, none was refused for max_waiting (284 of 300 were, the
    gets begun before the messages ahead of them), and each ask's receiver had seen the
    message sent just before it."""
    bus, _, queue, oneway, client = _node_with_queue(bus_factory, "tcp")
    seen: list[int] = []
    bus.subscribe("order:x", lambda message: seen.append(message.args[0]), weak=False)
    bus.subscribe("order:ask", lambda message: seen[-1], weak=False)
    pairs = 300
    requests = []
    for i in range(pairs):
        requests.append(rpc("send_message", f"s{i}", token=oneway, identifier="order:x",
                            args=[i]))
        requests.append(rpc("get", f"w{i}", token=queue, timeout=WAIT) if waiting == "get"
                        else rpc("ask", f"w{i}", identifier="order:ask", timeout=WAIT))
    try:
        client.sock.sendall(b"\n".join(requests) + b"\n")
        answers = {answer["id"]: answer for answer in (client.answer()
                                                       for _ in range(2 * pairs))}
    finally:
        client.close()
    results = [answers[f"w{i}"].get("result", answers[f"w{i}"].get("error"))
               for i in range(pairs)]
    if waiting == "get":
        assert results == [["order:x", [i], {}] for i in range(pairs)]
    else:  # (what came after an ask may run beside it: the receiver saw i at least)
        assert [result[0]["value"] >= i for i, result in enumerate(results)] == [True] * pairs
    assert all(answers[f"s{i}"]["result"] == "ok" for i in range(pairs))


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_ask_after_a_message_on_one_connection_finds_it_delivered(
        bus_factory: Callable[..., Bus], scheme: str) -> None:
    """The message's receiver is still running when the ask comes (it waits up to 1 s
    for the ask to begin): the ask begins only after it, and its receiver sees the message
    (over HTTP the ask began at once, beside the delivery, and saw nothing)."""
    bus, port = serve(bus_factory, scheme)  # (no queue: the message is answered at once)
    client = Client(scheme, port)
    oneway = client.call(rpc("connect_oneway", 1, ttl=60))
    seen: list[int] = []
    asked = threading.Event()

    def slow(message: Any) -> None:
        asked.wait(1)  # (not set, once the ask waits for this receiver: the test's point)
        seen.append(message.args[0])

    def answer(message: Any) -> list[int]:
        asked.set()
        return list(seen)

    bus.subscribe("order:x", slow, weak=False)
    bus.subscribe("order:ask", answer, weak=False)
    try:
        assert client.call(rpc("send_message", "s", token=oneway, identifier="order:x",
                               args=[1])) == "ok"
        assert client.call(rpc("ask", "a", identifier="order:ask", timeout=WAIT)) == [
            {"value": [1]}]
    finally:
        client.close()
