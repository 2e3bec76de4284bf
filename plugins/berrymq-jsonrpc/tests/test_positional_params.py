"""Params by position follow each method's table in docs/protocol.md, extras included:
``send_message(token, identifier, args, kwargs, uid, hops, reply_to)`` and
``ask(identifier, args, kwargs, timeout, token, uid, hops)`` (they stopped at four, so the
extras could only be given by name)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from helpers import serve
from probe_tools import post_body, tcp_call

import berrymq
from berrymq.bus import Bus

WAIT = 10.0


def call(scheme: str, port: int, method: str, params: Any) -> dict[str, Any]:
    """One request on a connection of its own: the answer, parsed."""
    request = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    if scheme == "http":
        answer: dict[str, Any] = post_body(port, json.dumps(request).encode())
        return answer
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        answer = tcp_call(sock, request)
    return answer


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_send_message_takes_its_extras_by_position(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, scheme)
    got = berrymq.Queue("pos:*", bus=bus)
    bus.subscribe("pos:double", lambda message: 2 * message.args[0], weak=False)
    token = call(scheme, port, "connect_oneway", [60])["result"]
    for _ in range(2):  # the same uid twice: delivered once
        answer = call(scheme, port, "send_message",
                      [token, "pos:double", [21], {}, "uid-of-this-message", 0, "pos:reply"])
        assert answer.get("result") == p.RESULT_OK, answer
    first = got.get(timeout=WAIT)
    assert (first.id, first.args) == ("pos:double", (21,))
    reply = got.get(timeout=WAIT)  # reply_to: the receiver's return value, sent there
    assert (reply.id, reply.args) == ("pos:reply", (42,))
    assert got.empty()


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_ask_takes_its_token_and_extras_by_position(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    bus, port = serve(bus_factory, scheme)
    bus.subscribe("price:quote", lambda message: 9.5 * message.args[0], weak=False)
    token = call(scheme, port, "connect_oneway", [60])["result"]
    params = ["price:quote", [2], {}, WAIT, token, "uid-of-this-ask-0", 0]
    assert call(scheme, port, "ask", params).get("result") == [{"value": 19.0}]
    assert call(scheme, port, "ask", params).get("result") == []  # a uid is answered once
    unknown = call(scheme, port, "ask", [*params[:4], "A" * 43])  # the token is checked
    assert unknown["error"]["code"] == p.UNKNOWN_TOKEN, unknown
    over = call(scheme, port, "ask", [*params, "one more"])
    assert over["error"]["data"] == "ask takes at most 7 parameters by position", over


def test_one_parameter_by_position_is_named_in_the_singular(
        bus_factory: Callable[..., Bus]) -> None:
    _, port = serve(bus_factory, "tcp")
    over = call("tcp", port, "connect_oneway", [60, 60])
    assert over["error"]["data"] == "connect_oneway takes at most 1 parameter by position"
