"""The cap on the interconnections one connection carries back (setting
``max_interconnects_per_connection``), on real loopback sockets with a raw client.

Over TCP an ``interconnect`` with ``addr`` null makes the node send its messages back over
the connection the request came on. Each such link may hold a request of up to
``max_size`` there, so a client that opened many and stopped reading made the node hold
``max_sessions`` x ``max_size`` (539 MB with 1,000 sessions on one unread connection and
messages of 500 KB). Over HTTP the node never sends over a connection a client opened: it
calls the client's server back on a connection of its own, and the key does not apply.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.status import status_snapshot
from helpers import serve
from probe_tools import OPEN_SOCKETS, http_call, open_socket, request, tcp_call

from berrymq.bus import Bus
from berrymq.errors import SettingsError

Factory = Callable[..., Bus]
SETTING = "max_interconnects_per_connection"

def interconnect(sock: socket.socket, id: int, addr: str | None = None) -> dict[str, Any]:
    """The node's answer to an ``interconnect`` sent as a line on ``sock``."""
    answer: dict[str, Any] = tcp_call(sock, request(
        "interconnect", {"addr": addr, "token": f"peer-token-{id:031d}", "ttl": 60}, id))
    return answer


def test_one_tcp_connection_carries_at_most_the_cap_of_interconnections(
        bus_factory: Factory, wait_for: Callable[..., Any]) -> None:
    bus, port = serve(bus_factory, "tcp", **{SETTING: 2})
    service = bus.transport("tcp").service  # type: ignore[attr-defined]
    sock = open_socket(port)
    tokens = [interconnect(sock, i)["result"] for i in range(2)]
    assert all(type(token) is str for token in tokens)
    error = interconnect(sock, 2)["error"]
    assert error["code"] == p.LIMIT_REACHED and error["message"] == "Limit reached"
    assert error["data"]["setting"] == SETTING and error["data"]["limit"] == 2
    assert SETTING in error["data"]["detail"]
    assert len(service.sessions) == 2  # the refused one left no session behind
    # sessions whose messages do not go back over the connection are not counted
    assert type(tcp_call(sock, request("connect_oneway", {"ttl": 60}, 3))["result"]) is str
    # another connection has a cap of its own
    assert type(interconnect(open_socket(port), 4)["result"]) is str
    # closing an interconnection gives its place back
    closed = tcp_call(sock, request("close_connection", {"token": tokens[0]}, 5))
    assert closed["result"] == "ok"
    assert type(interconnect(sock, 6)["result"]) is str
    assert interconnect(sock, 7)["error"]["data"]["setting"] == SETTING
    assert status_snapshot(bus)["refused"]["reasons"] == {SETTING: 2}
    # the connection's end closes its interconnections (the others stay) ...
    sock.close()
    wait_for(lambda: len(service.sessions) == 2, what="the connection's interconnections closed")
    assert {s.style for s in service.sessions.values()} == {"oneway", "interconnect"}


def test_the_default_cap_is_16(bus_factory: Factory) -> None:
    _, port = serve(bus_factory, "tcp")
    sock = open_socket(port)
    for i in range(16):
        assert type(interconnect(sock, i)["result"]) is str
    refusal = interconnect(sock, 16)["error"]["data"]
    assert (refusal["setting"], refusal["limit"]) == (SETTING, 16)


def test_a_refused_interconnect_opens_no_callback_connection(bus_factory: Factory) -> None:
    """An ``interconnect`` over ``max_sessions`` is refused before the node calls the
    address back (it once connected, was refused, and left that connection open)."""
    _, port = serve(bus_factory, "tcp", max_sessions=1)
    callback = socket.create_server(("127.0.0.1", 0))
    OPEN_SOCKETS.append(callback)
    addr = f"tcp://127.0.0.1:{callback.getsockname()[1]}"
    sock = open_socket(port)
    assert type(tcp_call(sock, request("connect_oneway", {"ttl": 60}, 1))["result"]) is str
    error = interconnect(sock, 2, addr)["error"]
    assert error["code"] == p.LIMIT_REACHED and error["data"]["setting"] == "max_sessions"
    readable, _, _ = select.select([callback], [], [], 0)
    assert not readable, "the node connected to the callback address of a refused interconnect"


def test_the_cap_is_a_setting_of_tcp_only(bus_factory: Factory) -> None:
    """Over HTTP no link sends over a connection a client opened (the node calls the
    client's server back on a connection of its own), so the key is unknown there; over
    TCP a value that is no positive integer is named when the plugins load."""
    with pytest.raises(SettingsError, match=f"unknown key '{SETTING}' for plugin 'jsonrpc-http'"):
        bus_factory(jsonrpc_http={SETTING: 4}).transport("http")
    with pytest.raises(SettingsError, match=f"jsonrpc-tcp.{SETTING} must be a positive number"):
        bus_factory(jsonrpc_tcp={SETTING: 0}).transport("tcp")
    with pytest.raises(SettingsError, match=f"jsonrpc-tcp.{SETTING} must be an integer"):
        bus_factory(jsonrpc_tcp={SETTING: 2.5}).transport("tcp")


def test_a_refused_v1_interconnect_opens_no_callback_connection(bus_factory: Factory) -> None:
    """The same in JSON-RPC 1.0, the original berryMQ's form (it checked that the address
    accepts connections before it checked the caps)."""
    _, port = serve(bus_factory, "tcp", max_sessions=1)
    callback = socket.create_server(("127.0.0.1", 0))
    OPEN_SOCKETS.append(callback)
    sock = open_socket(port)
    assert type(tcp_call(sock, request("connect_oneway", {"ttl": 60}, 1))["result"]) is str
    answer = tcp_call(sock, {"method": "interconnect", "id": 2, "params": [
        ["127.0.0.1", callback.getsockname()[1]], f"peer-token-{2:031d}", 60]})
    assert answer["result"] is None and "max_sessions" in json.dumps(answer["error"]), answer
    readable, _, _ = select.select([callback], [], [], 0)
    assert not readable, "the node connected to the callback address of a refused interconnect"


def test_http_interconnections_of_one_connection_each_call_back_apart(
        bus_factory: Factory) -> None:
    """More interconnections than the TCP cap over one HTTP connection: each link has a
    connection of its own to the client's server, none sends over the client's."""
    _, callback_port = serve(bus_factory, "http")
    bus, port = serve(bus_factory, "http")
    service = bus.transport("http").service  # type: ignore[attr-defined]
    sock = open_socket(port)
    body_of = request("interconnect", {
        "addr": f"http://127.0.0.1:{callback_port}", "token": "t" * 43, "ttl": 60}, 1)
    for _ in range(p.DEFAULT_MAX_INTERCONNECTS_PER_CONNECTION + 1):
        answer = json.loads(http_call(sock, body_of)[1])
        assert type(answer["result"]) is str, answer
    links = [s.link for s in service.sessions.values()]
    assert len({id(link.channel) for link in links}) == len(links) == 17
    assert all(s.sends_on is None for s in service.sessions.values())


def test_a_peer_that_answers_the_nodes_messages_with_an_error_loses_its_connection(
        bus_factory: Factory) -> None:
    """Over TCP the connection a peer opened carries both ways of its interconnection.
    When the node gives up sending to the peer (here the peer answers the batch with a
    parse error, as a client that cannot read a text does), the node closed its way only:
    the peer's own sends still worked and it never learnt that nothing would come any
    more. Now the connection ends, which the peer sees at once."""
    bus, port = serve(bus_factory, "tcp", timeout=1)
    sock = open_socket(port)
    assert type(interconnect(sock, 1)["result"]) is str
    bus.twitter("job:x", 1)  # forwarded to the peer, in a send_messages batch
    reader = sock.makefile("rb")
    batch = json.loads(reader.readline())
    assert batch["method"] == "send_messages"
    sock.sendall(b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},'
                 b'"id":null}\n')
    sock.settimeout(10)  # the node gives up after its timeout (1 s), then closes
    assert reader.readline() == b""
    reader.close()
