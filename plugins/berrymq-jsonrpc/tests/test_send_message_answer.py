"""When a node answers a ``send_message`` request (docs/delivery.md): at once when nothing
at the node can refuse the message, after the delivery when something can (so a refusal
is the answer), and, either way, the receivers get a connection's messages in the order
it sent them."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.outbox import REFUSED
from berrymq_jsonrpc.status import status_snapshot
from helpers import FullLink, held_async_receiver, serve
from probe_tools import post_body, request, tcp_call

import berrymq
from berrymq.bus import Bus
from berrymq.message import Message
from berrymq.plugins import PluginHost

SCHEMES = ["tcp", "http"]
WAIT = 10.0


def call(scheme: str, port: int, sock: socket.socket | None, obj: dict[str, Any]) -> Any:
    return tcp_call(sock, obj) if sock is not None else post_body(port, json.dumps(obj).encode())


def open_oneway(scheme: str, port: int, sock: socket.socket | None) -> str:
    return str(call(scheme, port, sock, request("connect_oneway", {"ttl": 60}))["result"])


def connection(scheme: str, port: int) -> socket.socket | None:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT) if scheme == "tcp" else None


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_send_message_nothing_can_refuse_is_answered_before_its_receiver_runs(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, scheme)
    release, delivered = threading.Event(), threading.Event()
    got: list[int] = []

    def slow(message: Message) -> None:
        release.wait(WAIT)
        got.append(message.args[0])
        delivered.set()

    bus.subscribe("job:done", slow, weak=False)
    sock = connection(scheme, port)
    try:
        token = open_oneway(scheme, port, sock)
        params = {"token": token, "identifier": "job:done", "args": [1], "kwargs": {}}
        # answered while the receiver cannot finish: the answer did not wait for it
        assert call(scheme, port, sock, request("send_message", params, 7)) == {
            "jsonrpc": "2.0", "result": "ok", "id": 7}
        assert not got
        release.set()
        assert delivered.wait(WAIT)
        assert got == [1]
    finally:
        release.set()
        if sock is not None:
            sock.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_send_messages_answer_comes_after_the_messages_sent_before_it_were_delivered(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    """docs/protocol.md: where order across connections matters, send the last messages
    with send_messages and wait for its answer (a get or an ask begins at once)."""
    bus, port = serve(bus_factory, scheme)
    release, answered = threading.Event(), threading.Event()
    got: list[int] = []
    seen_at_answer: list[list[int]] = []
    bus.subscribe("job:done", lambda message: release.wait(WAIT) and got.append(1), weak=False)
    sock = connection(scheme, port)
    try:
        token = open_oneway(scheme, port, sock)
        params = {"token": token, "identifier": "job:done", "args": [1], "kwargs": {}}
        assert call(scheme, port, sock, request("send_message", params, 7))["result"] == "ok"

        def last() -> None:
            batch = {"token": token, "messages": [["job:last", [], {}]]}
            assert call(scheme, port, sock, request("send_messages", batch, 8))["result"] == "ok"
            seen_at_answer.append(list(got))
            answered.set()

        sender = threading.Thread(target=last)
        sender.start()
        assert not answered.wait(0.3)  # (not while the message before it is delivered)
        release.set()
        sender.join(WAIT)
        assert seen_at_answer == [[1]]
    finally:
        release.set()
        if sock is not None:
            sock.close()

@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_send_message_a_queue_may_refuse_is_answered_after_its_delivery(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, scheme)
    queue = berrymq.Queue("job:*", maxsize=1, on_full="refuse", bus=bus)
    sock = connection(scheme, port)
    try:
        token = open_oneway(scheme, port, sock)
        params = {"token": token, "identifier": "job:done", "args": [1], "kwargs": {}}
        assert call(scheme, port, sock, request("send_message", params, 1))["result"] == "ok"
        # the queue is full now: the answer is the refusal, which only the delivery knows
        refused = call(scheme, port, sock, request("send_message", {**params, "args": [2]}, 2))
        assert refused["error"]["code"] == p.QUEUE_FULL
        assert queue.get_nowait().args == (1,)
    finally:
        if sock is not None:
            sock.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_refusal_by_a_busy_async_receiver_is_the_answer(
        scheme: str, bus_factory: Callable[..., Bus], berrymq_plugin_host: PluginHost,
        wait_for: Callable[..., Any]) -> None:
    """An ``async def`` receiver with ``async_pending_limit`` messages outstanding refuses
    the next: the node answers after the delivery, so a raw client gets *Queue is full*
    naming the setting, not an "ok" for a message that was never handed over."""
    bus = bus_factory.keep(Bus(raise_errors=True, async_pending_limit=1, async_pending_wait=0,
                               plugins=berrymq_plugin_host))
    port = int(bus.transport(scheme).listen(f"{scheme}://127.0.0.1:0").rsplit(":", 1)[1])
    sock = connection(scheme, port)
    try:
        with held_async_receiver(bus, "job:*") as (got, release):
            token = open_oneway(scheme, port, sock)
            params = {"token": token, "identifier": "job:done", "args": [1], "kwargs": {}}
            assert call(scheme, port, sock, request("send_message", params, 1))["result"] == "ok"
            refused = call(scheme, port, sock,
                           request("send_message", {**params, "args": [2]}, 2))
            error = refused["error"]
            assert (error["code"], error["data"]["refused"]) == (p.QUEUE_FULL, [0])
            assert "async receiver" in error["data"]["detail"]
            assert "setting async_pending_limit" in error["data"]["detail"]
            release()
            wait_for(lambda: got, what="the first message delivered")
            assert got == [1]  # the refused one was never handed over
    finally:
        if sock is not None:
            sock.close()


def test_a_connections_messages_keep_their_order_however_they_are_answered(
        bus_factory: Callable[..., Bus]) -> None:
    """Requests answered at once, notifications and ``send_messages`` batches (answered
    after their delivery), pipelined on one TCP connection: delivered in the order sent."""
    bus, port = serve(bus_factory, "tcp")
    got: list[int] = []
    done = threading.Event()
    total = 600  # a request, a notification and a batch of three, in turn

    def receiver(message: Message) -> None:
        got.append(message.args[0])
        if len(got) == total:
            done.set()

    bus.subscribe("job:n", receiver, weak=False)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        token = open_oneway("tcp", port, sock)
        lines, expected_answers, n = [], 0, 0
        while n < total:
            kind = len(lines) % 3
            if kind == 2:  # a batch of three
                batch = [["job:n", [n + i], {}] for i in range(3)]
                lines.append(request("send_messages", {"token": token, "messages": batch}, n))
                n += 3
                expected_answers += 1
                continue
            params = {"token": token, "identifier": "job:n", "args": [n], "kwargs": {}}
            lines.append(request("send_message", params, n if kind == 0 else None))
            expected_answers += kind == 0
            n += 1
        for start in range(0, len(lines), 25):  # pipelined, several requests per write
            sock.sendall(b"".join(json.dumps(line).encode() + b"\n"
                                  for line in lines[start:start + 25]))
        reader = sock.makefile("rb")
        answers = [json.loads(reader.readline()) for _ in range(expected_answers)]
        reader.close()
    assert all(answer.get("result") == "ok" for answer in answers), answers[:3]
    assert done.wait(WAIT), f"{len(got)} of {total} delivered"
    assert got == list(range(total))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_session_queue_stores_a_request_and_does_not_answer_ask(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, scheme)
    bus.subscribe("job:*", lambda message: "real", weak=False)
    sock = connection(scheme, port)
    try:
        token = call(scheme, port, sock, request(
            "connect_via_queue", {"identifier": "job:*", "ttl": 60}))["result"]
        assert [s.kind for s in bus.subscriptions()] == ["function", "queue"]
        assert [s.answers for s in bus.subscriptions()] == [True, False]
        assert bus.ask("job:x", timeout=WAIT) == ["real"]  # the queue stored it, silently
        got = call(scheme, port, sock, request("get_nowait", {"token": token}))
        assert got["result"] == ["job:x", [], {}]
    finally:
        if sock is not None:
            sock.close()


def test_a_full_async_receiver_does_not_hold_up_the_delivery_lane(
        bus_factory: Callable[..., Bus], berrymq_plugin_host: PluginHost,
        wait_for: Callable[..., Any]) -> None:
    """The delivery lane carries every message that comes in: a message for an ``async
    def`` receiver that is full is refused there at once, not after
    ``async_pending_wait`` (30 s here), so another client's message is not held up."""
    bus = bus_factory.keep(Bus(async_pending_limit=1, async_pending_wait=30,
                               plugins=berrymq_plugin_host))
    port = int(bus.transport("tcp").listen("tcp://127.0.0.1:0").rsplit(":", 1)[1])
    other: list[int] = []
    bus.subscribe("other:*", lambda message: other.append(message.args[0]), weak=False)
    first, second = connection("tcp", port), connection("tcp", port)
    assert first is not None and second is not None
    try:
        with held_async_receiver(bus, "job:*") as (got, release):
            token = open_oneway("tcp", port, first)
            for i in range(3):  # notifications: the first is held, the others find it full
                first.sendall(json.dumps(request("send_message", {
                    "token": token, "identifier": "job:x", "args": [i], "kwargs": {}},
                    None)).encode() + b"\n")
            # refused as they come, not one every 30 s
            wait_for(lambda: status_snapshot(bus)["lost"]["reasons"].get(REFUSED) == 2,
                     what="the two messages the full receiver refused, counted")
            token = open_oneway("tcp", port, second)
            answer = call("tcp", port, second, request("send_message", {
                "token": token, "identifier": "other:x", "args": [7], "kwargs": {}}))
            assert answer["result"] == "ok"
            wait_for(lambda: other == [7], what="the other client's message, delivered")
            release()
            wait_for(lambda: got == [0], what="the held message, delivered")
    finally:
        first.close()
        second.close()


def test_a_message_a_peers_full_link_refused_is_counted_once(
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any]) -> None:
    """Delivered here, refused by the link to a further peer: one loss in /status (the
    core's ``not forwarded: QueueFull``), not also one of the transport's."""
    bus, port = serve(bus_factory, "tcp")
    got: list[int] = []
    bus.subscribe("job:*", lambda message: got.append(message.args[0]), weak=False)
    bus.add_forwarder(FullLink())
    sock = connection("tcp", port)
    assert sock is not None
    with sock:
        token = open_oneway("tcp", port, sock)
        answer = call("tcp", port, sock, request("send_message", {
            "token": token, "identifier": "job:x", "args": [1], "kwargs": {}}))
        wait_for(lambda: got == [1], what="the message delivered here")
        # the answer says that this node's receivers had it: a retry would repeat it here
        assert answer["error"]["code"] == p.QUEUE_FULL
        assert answer["error"]["data"]["detail"].startswith(
            "delivered to this node's receivers, but not forwarded: a link to a further peer "
            "refused it (the outbox to the peer is full)"), answer
        assert status_snapshot(bus)["lost"] == {
            "total": 1, "reasons": {"not forwarded: QueueFull": 1}}
