"""A peer that stops reading (stopped with SIGSTOP, in a debugger, or one JSON line from
anyone on loopback) fills the outbox of its link; a message from another client that the
node hands on to it is then refused at once, counted as not forwarded, and delivered to
the node's own receivers, instead of holding the node's delivery lane, and with it every
client of the node, for ``outbox_wait`` (docs/delivery.md)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from helpers import serve, tcp_call

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
        assert slowest < 3.0, slowest  # (the link was given up after 10 s: its ack timeout)
        refused = sum(n for reason, n in bus.losses.snapshot().items()
                      if "not forwarded" in reason and "QueueFull" in reason)
        assert refused > 0, bus.losses.snapshot()
    finally:
        client.close()
        mute.close()
