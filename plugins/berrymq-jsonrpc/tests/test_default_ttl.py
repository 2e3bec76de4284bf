"""A connection made with the default ``ttl`` (SPEC 7: ``ttl=1000``) to a node whose
``max_ttl`` is lower gets that cap, as a raw client that leaves ``ttl`` out does; one whose
caller chose a ttl over the cap is refused, naming it. (Every connection a program made
with the defaults was refused once an operator lowered ``max_ttl``.)"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import pytest
from berrymq_jsonrpc import protocol as p
from berrymq_jsonrpc.status import status_snapshot

from berrymq.api import DEFAULT_TTL
from berrymq.bus import Bus
from berrymq.errors import RemoteError, TransportError
from berrymq.identifier import Identifier

WAIT = 10.0


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_the_default_ttl_is_the_nodes_max_ttl_where_that_is_lower(
        scheme: str, bus_factory: Callable[..., Bus]) -> None:
    node = bus_factory(**{f"jsonrpc_{scheme}": {"max_ttl": 100}})
    url = node.transport(scheme).listen(f"{scheme}://127.0.0.1:0")
    client = bus_factory()
    if scheme == "http":
        client.transport("http").listen("http://127.0.0.1:0")  # the node calls back here
    transport = client.transport(scheme)
    oneway = transport.connect_oneway(url, DEFAULT_TTL)
    via_queue = transport.connect_via_queue(url, Identifier("job:*"), DEFAULT_TTL)
    both = transport.interconnect(url, DEFAULT_TTL)
    for connection in (oneway, via_queue, both):
        client.track_connection(connection)
    ttls = sorted(session.ttl for session in node.transport(scheme).service.sessions.values())
    assert ttls == [100.0, 100.0, 100.0]
    # left out, not asked for and refused first: an operator's alert on refusals stays quiet
    assert status_snapshot(node)["refused"]["total"] == 0
    node.twitter("job:run", 1)
    assert via_queue.get(timeout=WAIT).args == (1,)
    with pytest.raises(RemoteError) as refused:
        transport.connect_oneway(url, 1000.0)  # chosen by the caller: refused
    assert refused.value.code == p.LIMIT_REACHED
    assert refused.value.data["setting"] == "max_ttl"


def test_an_interconnect_with_the_default_ttl_keeps_this_nodes_own_max_ttl(
        bus_factory: Callable[..., Bus]) -> None:
    node = bus_factory()
    url = node.transport("tcp").listen("tcp://127.0.0.1:0")
    client = bus_factory(jsonrpc_tcp={"max_ttl": 50})
    connection = client.transport("tcp").interconnect(url, DEFAULT_TTL)
    client.track_connection(connection)
    own = list(client.transport("tcp").service.sessions.values())
    assert [session.ttl for session in own] == [50.0]
    with pytest.raises(TransportError, match="max_ttl"):
        client.transport("tcp").interconnect(url, 1000.0)


def test_an_interconnect_with_the_default_ttl_takes_both_nodes_lower_caps(
        bus_factory: Callable[..., Bus]) -> None:
    """This node's cap of 500 was sent as the ttl, no longer the default, and the peer's
    cap of 300 refused it."""
    node = bus_factory(jsonrpc_tcp={"max_ttl": 300})
    url = node.transport("tcp").listen("tcp://127.0.0.1:0")
    client = bus_factory(jsonrpc_tcp={"max_ttl": 500})
    connection = client.transport("tcp").interconnect(url, DEFAULT_TTL)
    client.track_connection(connection)
    assert [s.ttl for s in client.transport("tcp").service.sessions.values()] == [500.0]
    assert [s.ttl for s in node.transport("tcp").service.sessions.values()] == [300.0]


def test_the_default_ttl_stays_the_default_when_copied_or_pickled() -> None:
    assert copy.copy(DEFAULT_TTL) is DEFAULT_TTL
    assert copy.deepcopy(DEFAULT_TTL) is DEFAULT_TTL
    assert pickle.loads(pickle.dumps(DEFAULT_TTL)) is DEFAULT_TTL
    assert DEFAULT_TTL == 1000
