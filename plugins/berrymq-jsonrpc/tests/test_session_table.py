"""The session table of a transport (berrymq_jsonrpc.session_table): which connections the
open sessions need, known without a scan of every session."""

from __future__ import annotations

import time
from collections.abc import Callable

from berrymq.bus import Bus

SESSIONS = 20_000


class _Connection:
    """Stands for a connection: the table only compares them by identity."""


def test_a_connection_is_tied_to_the_sessions_opened_or_last_used_over_it(
        bus_factory: Callable[..., Bus]) -> None:
    service = bus_factory().transport("tcp").service  # type: ignore[attr-defined]
    opened_over, used_over, other = _Connection(), _Connection(), _Connection()
    session = service.open_session("oneway", 60.0, opened_over)
    assert service.ties(opened_over) and not service.ties(used_over)
    service.session(session.token, used_over)  # a request over another connection
    assert service.ties(opened_over) and service.ties(used_over)
    service.session(session.token, other)  # the last one it came over counts
    assert not service.ties(used_over) and service.ties(other)
    service.close_sessions_of(opened_over, "connection closed")  # it lives on without it
    assert not service.ties(opened_over) and service.ties(other)
    assert session.token in service.sessions
    assert service.close_session(session.token)
    assert not service.ties(other)


def test_asking_it_costs_the_same_however_many_sessions_are_open(
        bus_factory: Callable[..., Bus]) -> None:
    """Every idle connection's check scanned every session: with 6,000 connections each
    holding one, the node's I/O thread spent 4 s on it every read_timeout (p99 of other
    clients' requests 6 ms, 273 ms at worst; 0.4 and 4 now)."""
    service = bus_factory(jsonrpc_tcp={"max_sessions": SESSIONS}).transport(
        "tcp").service  # type: ignore[attr-defined]
    connections = [_Connection() for _ in range(SESSIONS)]
    for connection in connections:
        service.open_session("oneway", 60.0, connection)
    started = time.thread_time()
    assert all(service.ties(connection) for connection in connections)
    for connection in connections:  # every connection closed: each its own sessions
        service.close_sessions_of(connection, "connection closed")
    # a scan each: 2 x 20,000 x 20,000 steps, minutes; a look-up each: milliseconds
    assert time.thread_time() - started < 2.0
    assert not any(service.ties(connection) for connection in connections)
