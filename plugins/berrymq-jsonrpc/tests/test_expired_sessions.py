"""Sessions past their ttl do not count against ``max_sessions``.

The node's sweeper closes expired sessions a little after their ttl (it sleeps between
rounds, and closes on a thread of its own); when it falls behind (a client opening short
sessions in a loop saw sessions idle 9 s with a ttl of 0.5 s), a new session must not be
refused for the sake of sessions that are gone already.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc import protocol as p
from helpers import serve
from probe_tools import http_answer, open_socket, request, tcp_call

from berrymq.bus import Bus
from berrymq.errors import TransportError
from berrymq.testing import free_port

TTL = 0.3


def call(scheme: str, sock: socket.socket, obj: Any) -> Any:
    """One request on the kept-open ``sock``: the answer, parsed."""
    if scheme == "tcp":
        return tcp_call(sock, obj)
    body = json.dumps(obj).encode()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    status, answer = http_answer(sock)
    assert status == 200, answer
    return json.loads(answer)


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_sessions_past_their_ttl_do_not_count_against_max_sessions(
        bus_factory: Callable[..., Bus], scheme: str, wait_for: Callable[..., Any]) -> None:
    bus, port = serve(bus_factory, scheme, max_sessions=3)
    service = bus.transport(scheme).service  # type: ignore[attr-defined]
    sock = open_socket(port)
    first = call(scheme, sock, request("connect_via_queue", {"identifier": "x:*", "ttl": TTL}))
    # a sweeper that has fallen behind: here it does not run at all
    service._sweeper.cancel()
    tokens = [first["result"]] + [
        call(scheme, sock, request("connect_oneway", {"ttl": TTL}, i))["result"]
        for i in range(2)]
    wait_for(lambda: all(s.deadline < time.monotonic() for s in list(service.sessions.values())),
             what="the three sessions to pass their ttl")
    assert len(service.sessions) == 3  # expired, not closed
    answer = call(scheme, sock, request("connect_oneway", {"ttl": 60}, "new"))
    assert isinstance(answer.get("result"), str), answer
    # the expired sessions are gone for good: their tokens are unknown now
    for token in tokens:
        error = call(scheme, sock, request("get_nowait", {"token": token}))["error"]
        assert error["code"] == p.UNKNOWN_TOKEN, error
    assert list(service.sessions) == [answer["result"]]
    assert service.refused.get("max_sessions", 0) == 0
    # and live sessions still count: the cap refuses a fourth
    for i in range(2):
        call(scheme, sock, request("connect_oneway", {"ttl": 60}, i))
    error = call(scheme, sock, request("connect_oneway", {"ttl": 60}, "over"))["error"]
    assert error["code"] == p.LIMIT_REACHED and error["data"]["setting"] == "max_sessions"


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_interconnection_idle_past_its_ttl_ends_with_a_warning(
        bus_factory: Callable[..., Bus], scheme: str, wait_for: Callable[..., Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """SPEC: a connection idle longer than its ttl is closed. An interconnection so closed
    said so at info level only, in a count of sessions that named no peer: two quiet
    services stopped exchanging messages, and nothing told their operators."""
    opener, _ = serve(bus_factory, scheme)  # (over HTTP the peer calls back its server)
    _, port = serve(bus_factory, scheme)
    with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
        connection = opener.transport(scheme).interconnect(f"{scheme}://127.0.0.1:{port}",
                                                           ttl=TTL)
        wait_for(lambda: connection.closed, what="the idle interconnection to close")
        wait_for(lambda: any("idle longer than its ttl" in r.getMessage()
                             for r in caplog.records), what="its warning")
    said = [r.getMessage() for r in caplog.records if "interconnection" in r.getMessage()]
    assert any(f"ended (idle longer than its ttl, {TTL:g} s: interconnect again, or with a "
               "longer ttl); messages are no longer forwarded either way" in line
               for line in said), said


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_interconnection_closed_on_purpose_ends_quietly(
        bus_factory: Callable[..., Bus], scheme: str,
        caplog: pytest.LogCaptureFixture) -> None:
    opener, _ = serve(bus_factory, scheme)
    peer, port = serve(bus_factory, scheme)
    with caplog.at_level(logging.WARNING, logger="berrymq.remote"):
        connection = opener.transport(scheme).interconnect(f"{scheme}://127.0.0.1:{port}",
                                                           ttl=60)
        connection.close()
        peer.close()
        opener.close()
    assert not [r for r in caplog.records if "interconnection" in r.getMessage()]


def test_an_interconnect_that_failed_or_an_opener_that_lost_its_peer_warns_once(
        bus_factory: Callable[..., Bus], wait_for: Callable[..., Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """A failed ``interconnect`` is its exception, not a warning that an interconnection
    ended too; a lost peer is the opener's connection's own warning ("... lost"), not a
    second one of its session (each was said twice)."""
    opener, _ = serve(bus_factory, "http")
    with caplog.at_level(logging.WARNING, logger="berrymq"):
        with pytest.raises(TransportError):
            opener.transport("http").interconnect(f"http://127.0.0.1:{free_port()}", ttl=60)
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        peer, port = serve(bus_factory, "tcp")
        connection = opener.transport("tcp").interconnect(f"tcp://127.0.0.1:{port}", ttl=60)
        peer.close()
        wait_for(lambda: connection.closed, what="the opener to find its peer gone")
        wait_for(lambda: caplog.records, what="a warning")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and " lost: " in said[0], said
