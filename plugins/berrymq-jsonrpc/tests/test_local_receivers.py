"""A process's local receivers (a pattern whose name starts with ``_``) are its own: a
node refuses a local identifier from outside, and a wildcard name (``*:stop``, ``*``)
sent from outside, which matches local names too, does not reach them either (a client
ran a node's private ``_admin:shutdown`` receiver by sending ``*:shutdown``). Within the
process the same message reaches them, as SPEC 1's symmetric matching says."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import serve
from probe_tools import post_body, tcp_call

import berrymq
from berrymq.bus import Bus

SCHEMES = ["tcp", "http"]
WAIT = 10.0


class Node:
    """A served bus with a local and a public receiver of ``*:shutdown``, and a local
    queue of everything."""

    def __init__(self, bus_factory: Callable[..., Bus], scheme: str) -> None:
        self.scheme = scheme
        self.bus, self.port = serve(bus_factory, scheme)
        self.private: list[str] = []
        self.public: list[str] = []
        self.marked = threading.Event()
        self.bus.subscribe("_admin:shutdown", lambda m: self.private.append(m.id) or "private",
                           weak=False)
        self.bus.subscribe("svc:shutdown", lambda m: self.public.append(m.id) or "public",
                           weak=False)
        self.bus.subscribe("svc:marker", lambda m: self.marked.set(), weak=False)
        self.queue = berrymq.Queue("_mine:*", bus=self.bus)
        self.sock = (socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
                     if scheme == "tcp" else None)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        obj = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        if self.sock is not None:
            return tcp_call(self.sock, obj)
        return post_body(self.port, json.dumps(obj).encode())

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.queue.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_wildcard_name_from_outside_does_not_reach_local_receivers(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    node = Node(bus_factory, scheme)
    try:
        token = node.call("connect_oneway", {"ttl": 60})["result"]
        for identifier in ("*:shutdown", "*", "*:*"):
            answer = node.call("send_message", {"token": token, "identifier": identifier,
                                                "args": [], "kwargs": {}})
            assert answer["result"] == "ok"
        node.call("send_message", {"token": token, "identifier": "svc:marker"})
        assert node.marked.wait(WAIT)  # (a connection's messages are delivered in order)
        assert node.public == ["*:shutdown", "*:*", "*:*"]
        assert node.private == []
        assert node.queue.qsize() == 0
        # within the process, the same message reaches them
        node.bus.twitter("*:shutdown")
        assert node.private == ["*:shutdown"]
    finally:
        node.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_wildcard_ask_from_outside_does_not_run_local_receivers(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    node = Node(bus_factory, scheme)
    try:
        for timeout in (5, None):  # on a helper thread by its timeout, or in one go
            answer = node.call("ask", {"identifier": "*:shutdown", "args": [], "kwargs": {},
                                       "timeout": timeout})
            assert [entry.get("value") for entry in answer["result"]] == ["public"]
        assert node.private == []
    finally:
        node.close()


def test_a_wildcard_from_an_interconnected_process_does_not_reach_local_receivers(
        bus_factory: Callable[..., Bus]) -> None:
    node = Node(bus_factory, "tcp")
    sender = bus_factory()
    try:
        connection = sender.transport("tcp").interconnect(f"tcp://127.0.0.1:{node.port}", 60)
        sender.track_connection(connection)
        sender.talk("*:shutdown", "reply:shutdown")
        sender.twitter("svc:marker")
        assert node.marked.wait(WAIT)
        assert node.public == ["*:shutdown"]
        assert node.private == []
        assert sender.ask("*:shutdown", timeout=5) == ["public"]
        assert node.private == []
    finally:
        node.close()


def test_a_talk_from_outside_whose_reply_to_is_a_wildcard_reaches_no_local_receiver(
        bus_factory: Callable[..., Bus]) -> None:
    """The node sends its receivers' replies to the talk's reply_to: ``*:shutdown`` ran
    its private ``_admin:shutdown`` receiver with a reply."""
    node = Node(bus_factory, "tcp")
    node.bus.subscribe("svc:status", lambda m: "status-ok", weak=False)
    sender = bus_factory()
    try:
        connection = sender.transport("tcp").interconnect(f"tcp://127.0.0.1:{node.port}", 60)
        sender.track_connection(connection)
        replies = berrymq.Queue("svc:shutdown", bus=sender)
        sender.talk("svc:status", "*:shutdown")
        assert replies.get(timeout=WAIT).args == ("status-ok",)  # the peers have the reply
        assert node.public == ["*:shutdown"]  # and the node's receivers but local ones
        assert node.private == []
        replies.close()
    finally:
        node.close()
