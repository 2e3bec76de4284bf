"""A remote ``ask`` as it comes in: counted in the node's stats like a message (``in``, and in
``recent``), once per request, and answered once per node however many connections the asker
has to it (SPEC 7: a message is delivered once per node). Real loopback sockets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from probe_tools import http_post, open_socket, port_of, request, tcp_call

from berrymq.bus import Bus
from berrymq.message import Message
from berrymq.stats import stats_for

WAIT = 10.0


def asks_in(bus: Bus) -> tuple[int, list[str]]:
    stats = stats_for(bus)
    return stats.totals()["messages_in"], [r["identifier"] for r in stats.recent_messages()]


@pytest.mark.parametrize("timeout", [2, None], ids=["with-timeout", "without-timeout"])
def test_an_ask_over_raw_tcp_and_http_is_counted_as_a_message_in(
        bus_factory: Callable[..., Bus], timeout: int | None) -> None:
    bus = bus_factory()
    bus.subscribe("probe:*", lambda message: message.args[0] + 1, weak=False)
    tcp = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    http = bus.transport("http").listen("http://127.0.0.1:0")
    params: dict[str, Any] = {"args": [1]} if timeout is None else {"args": [1], "timeout": timeout}
    before, _ = asks_in(bus)
    answer = tcp_call(open_socket(port_of(tcp)), request("ask", {"identifier": "probe:tcp", **params}))
    assert answer["result"][0]["value"] == 2, answer
    assert asks_in(bus)[0] == before + 1
    answer = http_post(port_of(http), request("ask", {"identifier": "probe:http", **params}))
    assert answer["result"][0]["value"] == 2, answer
    count, recent = asks_in(bus)
    assert count == before + 2
    assert recent[-2:] == ["probe:tcp", "probe:http"]


def test_an_ask_answered_by_its_timer_is_counted_once(bus_factory: Callable[..., Bus]) -> None:
    """The timer answers a slow receiver's ask again on the loop: still one message in."""
    bus = bus_factory()
    release = threading.Event()
    bus.subscribe("slow:*", lambda message: release.wait(WAIT), weak=False)
    tcp = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    try:
        asked = request("ask", {"identifier": "slow:x", "timeout": 0.2})
        answer = tcp_call(open_socket(port_of(tcp)), asked)
    finally:
        release.set()
    assert answer["result"][0]["error"]["type"] == "TimeoutError", answer
    assert asks_in(bus) == (1, ["slow:x"])


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_an_asker_with_three_connections_to_a_node_runs_its_receivers_once(
        bus_factory: Callable[..., Bus], scheme: str) -> None:
    answering, asker = bus_factory(), bus_factory()
    calls: list[Message] = []
    answering.subscribe("job:*", calls.append, weak=False)
    url = answering.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    if scheme == "http":  # interconnect over HTTP calls the asker back
        asker.transport("http").listen("http://127.0.0.1:0")
    transport = asker.transport(scheme)
    transport.interconnect(url, 600)
    transport.interconnect(url, 600)
    transport.connect_oneway(url, 600)
    assert len(asker.requesters()) == 3
    assert asker.ask("job:run", 1, timeout=WAIT) == [None]
    assert len(calls) == 1
    # every ask that came in is counted; the two repeats also as duplicates
    totals = stats_for(answering).totals()
    assert (totals["messages_in"], totals["duplicates"]) == (3, 2)
    # a second ask is a new message: answered again, once
    assert asker.ask("job:run", 2, timeout=WAIT) == [None]
    assert [m.args[0] for m in calls] == [1, 2]
