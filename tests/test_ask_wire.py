"""A remote ``ask``'s replies as they cross (docs/protocol.md, ask): a reply JSON cannot
hold becomes an error entry naming its receiver and node, whichever way the node answers
(every receiver, by a timeout, or by a timeout that passed first); a local ``ask`` hands
back Python values as they are."""

from __future__ import annotations

import math
import socket
import threading
from typing import Any

import pytest
from helpers import tcp_call

from berrymq import Bus, Message, ReplyError
from berrymq._ask_local import ask_local
from berrymq.identifier import parse
from berrymq.message import new_message
from berrymq.wire import decode_replies, encode_replies

WAIT = 15.0


def odd_quote(message: Message) -> object:
    """A receiver whose reply is not JSON."""
    return object()


def infinite_quote(message: Message) -> float:
    """A receiver whose reply is a float JSON does not write."""
    return math.inf


def fine_quote(message: Message) -> int:
    return 19


def test_a_local_ask_hands_back_python_values(berrymq_bus: Bus) -> None:
    berrymq_bus.subscribe("price:quote", odd_quote, weak=False)
    (reply,) = berrymq_bus.ask("price:quote", timeout=WAIT)
    assert type(reply) is object


def test_the_receiver_of_each_reply_is_noted_for_the_wire(berrymq_bus: Bus) -> None:
    berrymq_bus.subscribe("price:quote", fine_quote, weak=False)
    berrymq_bus.subscribe("price:quote", odd_quote, weak=False)
    receivers: list[object] = []
    message = new_message((parse("price:quote"), (), {}, 0, None))
    replies = ask_local(berrymq_bus, message, WAIT, receivers=receivers)
    ok, odd = decode_replies(encode_replies(replies, "n1", receivers), "peer")
    assert ok == 19
    assert isinstance(odd, ReplyError) and odd.exception_type == "TypeError"
    assert odd.receiver.endswith("odd_quote") and odd.node == "n1"


def call(port: int, request: dict[str, Any]) -> Any:
    """One JSON-RPC request as a line over TCP; the parsed answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        return tcp_call(sock, request)


@pytest.mark.parametrize("timeout", [None, 5.0])
@pytest.mark.parametrize("receiver", [odd_quote, infinite_quote])
def test_a_remote_reply_that_is_not_json_names_its_receiver(
        berrymq_bus: Bus, receiver: Any, timeout: float | None) -> None:
    berrymq_bus.subscribe("price:quote", fine_quote, weak=False)
    berrymq_bus.subscribe("price:quote", receiver, weak=False)
    port = int(berrymq_bus.transport("tcp").listen("tcp://127.0.0.1:0").rsplit(":", 1)[1])
    answer = call(port, {"jsonrpc": "2.0", "method": "ask", "id": 1,
                         "params": {"identifier": "price:quote", "timeout": timeout}})
    ok, odd = answer["result"]
    assert ok == {"value": 19}
    assert odd["error"]["type"] == "TypeError"
    assert odd["error"]["receiver"].endswith(receiver.__name__)
    assert odd["error"]["node"] == berrymq_bus.node_id


def test_a_reply_that_is_not_json_is_named_when_the_timeout_answers(berrymq_bus: Bus) -> None:
    """The timer answers (a receiver after it is still running): the replies so far keep
    their receivers."""
    release = threading.Event()

    def stuck(message: Message) -> None:
        release.wait(WAIT)

    berrymq_bus.subscribe("price:quote", odd_quote, weak=False)
    berrymq_bus.subscribe("price:quote", stuck, weak=False)
    port = int(berrymq_bus.transport("tcp").listen("tcp://127.0.0.1:0").rsplit(":", 1)[1])
    try:
        answer = call(port, {"jsonrpc": "2.0", "method": "ask", "id": 1,
                             "params": {"identifier": "price:quote", "timeout": 0.3}})
    finally:
        release.set()
    odd, late = answer["result"]
    assert odd["error"]["type"] == "TypeError"
    assert odd["error"]["receiver"].endswith("odd_quote")
    assert late["error"]["type"] == "TimeoutError"
    assert late["error"]["receiver"].endswith("stuck")
