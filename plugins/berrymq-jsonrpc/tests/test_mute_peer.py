"""A peer that stops reading (stopped with SIGSTOP, in a debugger, or one JSON line from
anyone on loopback) fills the outbox of its link; a message from another client that the
node hands on to it is then refused, counted as not forwarded, and delivered to the
node's own receivers, once the peer took nothing for a while (LANE_PATIENCE), instead of
holding the node's delivery lane, and with it every client of the node, for
``outbox_wait`` each time (docs/delivery.md). A peer that is slow but takes messages is
waited for: a chain of nodes loses nothing to a slow last one."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc.outbox import LANE_PATIENCE
from helpers import serve, tcp_call, wait_for

from berrymq.bus import Bus
from berrymq.message import Message

WAIT = 10.0
OUTBOX_WAIT = 30.0  # what each message would have waited for room
BIG = "x" * 100_000


def test_a_peer_that_reads_nothing_holds_up_no_other_client(
        bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, "tcp", outbox_size=4, outbox_wait=OUTBOX_WAIT)
    got: list[int] = []
    last = threading.Event()
    count = 300

    def receive(message: Message) -> None:
        got.append(message.args[1])
        if message.args[1] == count - 1:
            last.set()

    bus.subscribe("load:x", receive, weak=False)
    mute = socket.socket()
    mute.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    mute.settimeout(WAIT)
    mute.connect(("127.0.0.1", port))
    client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        answer = tcp_call(mute, {"jsonrpc": "2.0", "method": "interconnect", "id": 1, "params": {
            "addr": None, "token": "mute-peer-token-0123456789abcdef", "ttl": 600}})
        assert "result" in answer, answer
        token = tcp_call(client, {"jsonrpc": "2.0", "method": "connect_oneway", "id": 1,
                                  "params": {"ttl": 600}})["result"]
        slowest = 0.0
        for i in range(count):  # 30 MB for the mute peer: far past what its socket holds
            start = time.monotonic()
            answer = tcp_call(client, {"jsonrpc": "2.0", "method": "send_message", "id": i,
                                       "params": {"token": token, "identifier": "load:x",
                                                  "args": [BIG, i]}})
            slowest = max(slowest, time.monotonic() - start)
            assert "result" in answer or answer["error"]["code"] == -32005, answer
        assert last.wait(WAIT)
        assert got == list(range(count))  # the node's receivers had every one
        # waited once for the peer to move, then not: (given up after 10 s, its ack timeout)
        assert slowest < LANE_PATIENCE + 3.0, slowest
        refused = sum(n for reason, n in bus.losses.snapshot().items()
                      if "not forwarded" in reason and "QueueFull" in reason)
        assert refused > 0, bus.losses.snapshot()
    finally:
        client.close()
        mute.close()


@pytest.mark.parametrize(("delay", "count", "outbox"), [
    (0.0002, 6000, 2000),  # three outboxes' worth, acknowledged in many batches
    (0.12, 60, 20),  # a batch takes C 2.4 s
])
def test_a_chain_to_a_slow_but_reading_peer_loses_nothing(
        bus_factory: Callable[..., Bus], spawn: Callable[..., Any], delay: float,
        count: int, outbox: int) -> None:
    """A -> B -> C, C's receiver slower than A sends: B's lane waits for C, which takes
    batches as it goes, so A is slowed to C's pace and nothing is lost (refusing at once
    lost 6,787 of 10,000; waiting 2 s at most for a batch lost most of those whose batch
    takes C longer)."""
    bus, port = serve(bus_factory, "tcp", outbox_size=outbox)
    slow = spawn()
    slow("interconnect", addr=f"tcp://127.0.0.1:{port}")
    slow("slow", pattern="chain:*", delay=delay)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        token = tcp_call(client, {"jsonrpc": "2.0", "method": "connect_oneway", "id": 1,
                                  "params": {"ttl": 600}})["result"]
        lines = b"".join(json.dumps({"jsonrpc": "2.0", "method": "send_message", "params": {
            "token": token, "identifier": "chain:x", "args": [i]}}).encode() + b"\n"
            for i in range(count))
        client.sendall(lines)
        answer = tcp_call(client, {"jsonrpc": "2.0", "method": "send_message", "id": 2,
                                   "params": {"token": token, "identifier": "chain:end"}})
        assert answer["result"] == "ok", answer
    wait_for(lambda: slow("count", pattern="chain:*") == count + 1, 60, "C had them all")
    assert bus.losses.snapshot() == {}
