"""The order of a node's remote queues (SPEC 4: first in, first out): blocking ``get``s
waiting on one queue take its messages in the order the gets came, whatever connections
they came on (found by an outside audit: the waiting gets were woken all at once, and took
the messages in a set's order; with 2,000 waiting, the one that came first got message
672)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from helpers import serve
from probe_tools import http_answer, request_text, send_request

from berrymq.bus import Bus

WAIT = 10.0
GETS = 6


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
    queue = client.call(request_text("connect_via_queue", {"identifier": "order:*", "ttl": 60}, 1))
    oneway = client.call(request_text("connect_oneway", {"ttl": 60}, 2))
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
            getter.send(request_text("get", {"token": queue, "timeout": WAIT}, f"g{i}"))
            wait_for(lambda i=i: store.waiting == i + 1, WAIT, f"get {i} to wait")
        for i in range(GETS):
            assert client.call(request_text("send_message", {
                "token": oneway, "identifier": "order:x", "args": [i]}, f"s{i}")) == "ok"
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
        getter.send(b"\n".join(request_text("get", {"token": queue, "timeout": WAIT}, f"g{i}")
                               for i in range(GETS)))
        wait_for(lambda: store.waiting == GETS, WAIT, "every get to wait")
        for i in range(GETS):
            client.call(request_text("send_message", {
                "token": oneway, "identifier": "order:x", "args": [i]}, f"s{i}"))
        answers = {answer["id"]: answer["result"]
                   for answer in (getter.answer() for _ in range(GETS))}
        assert answers == {f"g{i}": ["order:x", [i], {}] for i in range(GETS)}
    finally:
        getter.close()
        client.close()
