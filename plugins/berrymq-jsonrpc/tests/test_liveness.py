"""Issue 10: a dead HTTP peer's interconnection is freed by liveness, not only at the
next forward or at its ttl. Two real nodes over HTTP, the peer in a subprocess, SIGKILLed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_jsonrpc.status import status_snapshot

from berrymq.bus import Bus

Factory = Callable[..., Bus]


def interconnected(bus_factory: Factory, spawn: Callable[..., Any], who_calls: str,
                   liveness_interval: float = 0.1) -> tuple[Bus, Any]:
    """A node (this process, probing every ``liveness_interval`` s) interconnected over
    HTTP with a peer."""
    bus = bus_factory(jsonrpc_http={"liveness_interval": liveness_interval})
    transport = bus.transport("http")
    url = transport.listen("http://127.0.0.1:0")
    peer = spawn()
    peer_url = peer("serve", addr="http://127.0.0.1:0")
    if who_calls == "peer":  # the node's session calls the peer back (peer_link)
        peer("interconnect", addr=url, ttl=3600)
    else:
        transport.interconnect(peer_url, 3600)
    service = transport.service  # type: ignore[attr-defined]
    assert [s.style for s in service.sessions.values()] == ["interconnect"]
    # forwarded to from here on (added before the interconnect call returned, either way)
    assert bus.node is not None and len(bus.node.forwarders) == 1
    return bus, peer


@pytest.mark.parametrize("who_calls", ["peer", "node"])
def test_a_killed_peer_is_noticed_without_traffic(
        bus_factory: Factory, spawn: Callable[..., Any], wait_for: Callable[..., Any],
        who_calls: str) -> None:
    bus, peer = interconnected(bus_factory, spawn, who_calls)
    service = bus.transport("http").service  # type: ignore[attr-defined]
    node = bus.node
    assert node is not None
    peer.kill()
    # No message is sent, the ttl is an hour: only the liveness probe can notice. The
    # session leaves the table first and its link the forwarders after (on a helper
    # thread), so the test waits for both: the link no longer forwarded to is the point.
    wait_for(lambda: not service.sessions and not node.forwarders, timeout=10,
             what="the dead peer's session closed and its link no longer forwarded to")


@pytest.mark.parametrize("who_calls", ["peer", "node"])
def test_messages_to_a_killed_peer_are_counted_lost(
        bus_factory: Factory, spawn: Callable[..., Any], wait_for: Callable[..., Any],
        who_calls: str) -> None:
    # no probe in the test's time: were the probe first to notice, the message would
    # find no link to be lost on
    bus, peer = interconnected(bus_factory, spawn, who_calls, liveness_interval=3600)
    service = bus.transport("http").service  # type: ignore[attr-defined]
    peer.kill()
    bus.twitter("job:done", 1)
    wait_for(lambda: not service.sessions, timeout=10, what="the dead peer's session closed")
    lost = status_snapshot(bus)["lost"]
    assert lost["reasons"].get("not sent: connection failed or closed", 0) >= 1, lost


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_a_killed_peer_of_an_interconnection_is_said_lost(
        bus_factory: Factory, spawn: Callable[..., Any], wait_for: Callable[..., Any],
        scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    """With nothing on its way to the peer, its death closed the interconnection without a
    word (an outside soak test: a later ask got [] and nothing said why)."""
    bus = bus_factory(**{f"jsonrpc_{scheme}": {"liveness_interval": 0.1}} if scheme == "http"
                      else {})
    transport = bus.transport(scheme)
    if scheme == "http":  # the peer calls this node's server back
        transport.listen("http://127.0.0.1:0")
    peer = spawn()
    peer_url = peer("serve", addr=f"{scheme}://127.0.0.1:0")
    connection = transport.interconnect(peer_url, 3600)
    def said_lost() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.getMessage().startswith(f"interconnect connection to {peer_url} lost: ")]

    with caplog.at_level(logging.WARNING, logger="berrymq"):
        peer.kill()
        # the line is written just after closed is set, on the thread that closes it
        wait_for(lambda: connection.closed and said_lost(), timeout=10,
                 what="the interconnection closed and said so")
    assert len(said_lost()) == 1, [r.getMessage() for r in caplog.records]
    assert bus.ask("any:thing", timeout=1) == []  # asked no more: the loss was said above
