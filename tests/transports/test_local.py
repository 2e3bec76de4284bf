"""The built-in local transport: buses in one process linked like nodes (SPEC 7 styles)."""

from __future__ import annotations

import pytest
from helpers import take_all

import berrymq
from berrymq import Bus, ConnectionClosed, Empty, Message, Queue, QueueFull, ReplyError
from berrymq._index import NOBODY
from berrymq.plugins import PluginHost
from berrymq.settings import Settings


@pytest.fixture
def nodes() -> list[Bus]:
    host = PluginHost(Settings())
    buses = [Bus(plugins=host, raise_errors=True, name=f"n{i}") for i in range(3)]
    yield buses
    for bus in buses:
        bus.close()


def serve(bus: Bus) -> str:
    return bus.transport("local").listen("local://")


def test_interconnect_forwards_both_ways_but_not_local_names(nodes: list[Bus]) -> None:
    a, b, _ = nodes
    address = serve(b)
    link = a.transport("local").interconnect(address, ttl=10)
    got_a, got_b = Queue("*", bus=a), Queue("*", bus=b)
    a.twitter("job:done", 1, user="ada")
    b.twitter("job:back")
    a.twitter("_private:x")
    assert [m.id for m in take_all(got_b)] == ["job:done", "job:back"]  # not _private:x
    assert [m.id for m in take_all(got_a)] == ["job:done", "job:back", "_private:x"]
    link.close()
    a.twitter("job:after")
    assert take_all(got_b) == []


def test_cycle_delivers_once_per_node(nodes: list[Bus]) -> None:
    a, b, c = nodes
    addresses = [serve(bus) for bus in nodes]
    a.transport("local").interconnect(addresses[1], ttl=10)
    b.transport("local").interconnect(addresses[2], ttl=10)
    c.transport("local").interconnect(addresses[0], ttl=10)
    queues = [Queue("ring:*", bus=bus) for bus in nodes]
    b.twitter("ring:go", "x")
    assert [len(take_all(q)) for q in queues] == [1, 1, 1]


def test_oneway_and_queue_styles_through_the_module_api(nodes: list[Bus]) -> None:
    server, client, _ = nodes
    address = serve(server)
    inbox = Queue("log:*", bus=server)
    with berrymq.use_bus(client):
        with pytest.raises(ConnectionClosed, match="connect_oneway"):
            berrymq.send_message("log:x")
        berrymq.connect_oneway(address)
        berrymq.send_message("log:line", "hello")
        assert inbox.get_nowait().args == ("hello",)
        berrymq.connect_via_queue(address, "task:*")
        server.twitter("task:run", 5)
        assert berrymq.get(timeout=5).args == (5,)
        with pytest.raises(Empty):
            berrymq.get_nowait()
        berrymq.close_connection(address)
        assert client.connections() == []
        with pytest.raises(ConnectionClosed, match="connect_via_queue"):
            berrymq.get_nowait()


def test_talk_and_ask_across_linked_buses(nodes: list[Bus]) -> None:
    a, b, _ = nodes
    a.transport("local").interconnect(serve(b), ttl=10)
    b.subscribe("calc:*", lambda m: m.args[0] * 2, weak=False)
    replies = Queue("calc_result:*", bus=a)
    a.talk("calc:double", "calc_result:x", 21)
    assert [m.args for m in take_all(replies)] == [(42,)]


def test_a_linked_bus_reaches_no_local_receiver_of_its_peer_by_a_wildcard(
        nodes: list[Bus]) -> None:
    """A bus's local receivers (``_`` patterns) are its own: a message, an ask or a talk
    reply named with a wildcard from a linked bus ran them (an ask still did after the
    messages were kept out)."""
    a, b, _ = nodes
    a.transport("local").interconnect(serve(b), ttl=10)
    ran: list[str] = []
    b.subscribe("_admin:stop", lambda m: ran.append(m.id) or "private", weak=False)
    b.subscribe("svc:stop", lambda m: "public", weak=False)
    b.subscribe("svc:status", lambda m: "ok", weak=False)
    assert a.ask("*:stop") == ["public"]
    a.twitter("*:stop")
    a.talk("svc:status", "*:stop")
    assert ran == []
    b.twitter("*:stop")  # within the bus: reached
    assert ran == ["*:stop"]


def test_unknown_address_and_ttl_validation(nodes: list[Bus]) -> None:
    with pytest.raises(ConnectionClosed, match="no bus serves local://nobody"):
        nodes[0].transport("local").connect_oneway("local://nobody", ttl=10)
    with berrymq.use_bus(nodes[0]):
        with pytest.raises(ValueError, match="ttl"):
            berrymq.connect_oneway("local://x", ttl=0)
        with pytest.raises(ValueError, match="no scheme"):
            berrymq.connect_oneway("localhost:80")


def test_name_taken(nodes: list[Bus]) -> None:
    nodes[0].transport("local").listen("local://taken")
    with pytest.raises(OSError, match="already served"):
        nodes[1].transport("local").listen("local://taken")


def test_full_local_queue_does_not_keep_a_message_from_other_nodes(nodes: list[Bus]) -> None:
    a, b, _ = nodes
    a.transport("local").interconnect(serve(b), ttl=10)
    full = Queue("q:*", bus=a, maxsize=1, on_full="refuse")
    remote = Queue("q:*", bus=b)
    a.twitter("q:1")
    with pytest.raises(QueueFull):
        a.twitter("q:2")
    assert [m.args for m in take_all(remote)] == [(), ()]
    assert full.qsize() == 1


def test_a_full_queue_of_a_linked_bus_does_not_take_its_replies_to_ask(nodes: list[Bus]) -> None:
    """The peer's full queue gives a ``QueueFull`` entry naming it, after the replies of
    its receivers (it raised from the peer's ``ask_local``: one entry for the whole link)."""
    a, b, _ = nodes
    a.transport("local").connect_oneway(serve(b), ttl=10)
    full = Queue("price:*", bus=b, maxsize=1, on_full="refuse")
    b.subscribe("price:quote", lambda m: m.args[0] * 9.5, weak=False)
    b.twitter("price:fill")
    reply, refusal = a.ask("price:quote", 2, timeout=10)
    assert reply == 19.0
    assert isinstance(refusal, ReplyError) and refusal.exception_type == "QueueFull"
    assert (refusal.receiver, refusal.node) == ("queue price:*", b.node_id)
    assert full.qsize() == 1


def test_a_peer_that_follows_nothing_matching_is_skipped_until_it_does(nodes: list[Bus]) -> None:
    a, b, _ = nodes
    a.transport("local").interconnect(serve(b), ttl=10)
    seen: list[Message] = []
    b.subscribe("other:*", seen.append, weak=False)
    a.twitter("job:x", 1)
    assert a.routes["job:x"][2] == NOBODY  # sent as if a had no peer (nor receiver)
    with b.subscribe("*:x", seen.append, weak=False):  # b's new subscription refreshes a
        a.twitter("job:x", 2)
    a.twitter("job:x", 3)
    b.twitter("other:y")  # b's own sends still reach a's receivers and b's
    assert [m.args for m in seen] == [(2,), ()]


def test_a_peer_that_passes_messages_on_is_not_skipped(nodes: list[Bus]) -> None:
    a, b, c = nodes
    address_b, address_c = serve(b), serve(c)
    a.transport("local").interconnect(address_b, ttl=10)
    inbox = Queue("job:*", bus=c)
    a.twitter("job:x", 1)  # b follows nothing and links nowhere else: skipped
    link = b.transport("local").interconnect(address_c, ttl=10)  # b's new link refreshes a
    a.twitter("job:x", 2)
    assert [m.args for m in take_all(inbox)] == [(2,)]
    link.close()
    a.twitter("job:x", 3)
    assert take_all(inbox) == []


def test_a_closed_link_stops_watching_its_peer(nodes: list[Bus]) -> None:
    a, b, _ = nodes
    link = a.transport("local").interconnect(serve(b), ttl=10)
    a.twitter("job:x")
    assert b.index.watchers != ()
    link.close()
    assert b.index.watchers == ()
