"""berrymq.node: what a bus gains once it has peers (stamped messages, de-duplication on
receipt, passing messages on)."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import pytest
from helpers import FullLink

import berrymq
import berrymq.transports.base
from berrymq import Bus, Message, PluginError, QueueFull
from berrymq._index import DIRECT, FORWARD
from berrymq.hookspecs import hookimpl
from berrymq.identifier import parse
from berrymq.plugins import PluginHost
from berrymq.settings import Settings
from berrymq.state import StateKey


class Link:
    """A forwarder that keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[Message, object]] = []

    def forward(self, message: Message, reply_to: object) -> None:
        self.sent.append((message, reply_to))


def test_a_bus_without_peers_has_no_node(bus: Bus) -> None:
    bus.subscribe("a:*", print, weak=False)
    bus.twitter("a:x")
    bus.talk("a:x", "b:y")
    assert bus.node is None and bus.connections() == [] and bus.transports() == {}
    assert bus.index.how == DIRECT


def test_client_calls_without_a_connection_make_no_node(bus: Bus) -> None:
    with pytest.raises(berrymq.ConnectionClosed, match="no connection is open"):
        berrymq.send_message("a:x")
    with pytest.raises(berrymq.ConnectionClosed, match="no queue connection is open"):
        berrymq.get_nowait()
    assert berrymq.show_network(bus, format="mermaid")
    assert bus.node is None


def test_uids_carry_the_node_prefix_and_never_repeat_across_threads(bus: Bus) -> None:
    prefix = bus.ensure_node().uids.prefix
    uids: list[str] = []

    def stamp() -> None:
        uids.extend(bus.stamp(Message("a:x")).uid or "" for _ in range(2000))

    threads = [threading.Thread(target=stamp) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(uids)) == 16_000
    assert all(uid.startswith(prefix) for uid in uids)
    assert not prefix.startswith(bus.node_id)  # the node id is public: it is not the prefix
    stamped = bus.stamp(Message("a:x"))
    assert bus.stamp(stamped) is stamped  # given once


def test_forwarded_messages_are_stamped_and_local_names_stay(bus: Bus) -> None:
    link = Link()
    bus.add_forwarder(link)
    assert bus.index.how == FORWARD
    bus.twitter("a:x", 1)
    bus.twitter("_secret:x")
    [(message, reply_to)] = link.sent
    assert message.id == "a:x" and message.args == (1,) and reply_to is None
    assert message.uid is not None and message.uid.startswith(bus.ensure_node().uids.prefix)
    bus.remove_forwarder(link)
    assert bus.index.how == DIRECT


def test_receive_drops_a_message_back_from_a_cycle_and_a_duplicate(bus: Bus) -> None:
    got: list[Message] = []
    bus.subscribe("a:*", got.append, weak=False)
    own = bus.stamp(Message("a:x"))
    assert bus.receive(own) is False  # went round a cycle back home
    theirs = Message("a:x", (1,), {}, 2, "peer-node-0000007")
    assert bus.receive(theirs) is True
    assert bus.receive(theirs) is False  # came by a second way
    [message] = got
    assert message.hops == 3 and message.uid == "peer-node-0000007"


def test_receive_passes_a_message_on_to_the_other_peers_only(bus: Bus) -> None:
    there, back = Link(), Link()
    bus.add_forwarder(there)
    bus.add_forwarder(back)
    bus.receive(Message("a:x", (), {}, 0, "peer-uid-0000001"), back)
    assert len(there.sent) == 1 and back.sent == []


def test_receive_with_nothing_to_do_takes_the_message_quietly(bus: Bus) -> None:
    back = Link()
    bus.add_forwarder(back)
    bus.twitter("a:x")  # the route is cached (empty)
    back.sent.clear()
    assert bus.receive(Message("a:x", (), {}, 0, "peer-uid-0000001"), back) is True
    assert back.sent == []


def test_receive_over_the_hop_limit_drops_with_a_warning(bus: Bus,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    bus.subscribe("a:*", print, weak=False)
    with caplog.at_level(logging.WARNING, logger="berrymq"):
        assert bus.receive(Message("a:x", (), {}, bus.hop_limit - 1, "peer-uid-0000001")) is False
    assert "hop limit" in caplog.text


def test_receive_with_reply_to_answers_and_passes_on(bus: Bus) -> None:
    link = Link()
    bus.add_forwarder(link)
    replies: list[Message] = []
    bus.subscribe("q:*", lambda m: m.args[0] * 2, weak=False)
    bus.subscribe("r:*", replies.append, weak=False)
    bus.receive(Message("q:x", (21,), {}, 0, "peer-uid-0000009"), None, parse("r:back"))
    assert [m.args for m in replies] == [(42,)]
    # the request went on to the other peers first, then the reply it caused: a third
    # node sees the question before its answer
    assert [(m.id, str(r)) for m, r in link.sent] == [("q:x", "r:back"), ("r:back", "None")]


@pytest.mark.parametrize("how", ["twitter", "talk", "pool"])
def test_a_third_node_sees_a_message_before_what_its_receivers_sent_in_reply(how: str) -> None:
    """A -> B -> C over local:// links; B's receiver of ``q:x`` sends ``r:x`` at once. B
    hands ``q:x`` on before its own receivers run, so C gets the cause before the effect
    (whether ``q:x`` came by twitter, by talk, or B delivers on a worker pool)."""
    a, b, c = Bus(name="order-a"), Bus(name="order-b"), Bus(name="order-c")
    try:
        seen: list[str] = []
        done = threading.Event()

        def at_c(message: Message) -> None:  # returns None: no reply to a talk
            seen.append(message.id)
            if message.id == "r:x":
                done.set()

        c.subscribe("*:x", at_c, weak=False)
        b.subscribe("q:*", lambda m: b.twitter("r:x"), weak=False)
        if how == "pool":
            b.set_multiplicity(2)
        b_local = b.transport("local")
        a.transport("local").interconnect(b_local.listen("local://order-b"), ttl=10)
        c.transport("local").interconnect(b_local.listen("local://order-b2"), ttl=10)
        if how == "talk":
            a.talk("q:x", "back:y")
        else:
            a.twitter("q:x")
        assert done.wait(10)
        assert seen == ["q:x", "r:x"]
    finally:
        for bus in (a, b, c):
            bus.close()


@pytest.mark.parametrize("how", ["talk", "receive"])
def test_a_refused_forward_is_raised_with_the_local_failures(how: str) -> None:
    """The receivers here still get the message; the sender hears of both the failing
    receiver (raise_errors) and the peer's full buffer, in one group."""
    with Bus(name="full-peer", raise_errors=True) as bus:
        ran: list[str] = []

        def fails(message: Message) -> None:
            ran.append(message.id)
            raise ValueError("receiver failed")

        bus.subscribe("q:*", fails, weak=False)
        bus.add_forwarder(FullLink())
        with pytest.raises(ExceptionGroup) as caught:
            if how == "talk":
                bus.talk("q:x", "back:y")
            else:
                bus.receive(Message("q:x", (), {}, 0, "peer-uid-0000001"), None, parse("back:y"))
        assert ran == ["q:x"]
        assert [type(e) for e in caught.value.exceptions] == [ValueError, QueueFull]
        assert caught.value.exceptions[1].not_forwarded  # counted, not to be counted again
        assert bus.losses.total == 1  # the message that did not go is counted too


class _BadTransport(berrymq.transports.base.Transport):
    """A plugin's transport whose close() raises, and whose connections' do too."""

    def listen(self, address: str) -> str:
        return address

    def interconnect(self, address: str, ttl: float) -> Any:
        return _BadConnection(address)

    connect_oneway = interconnect

    def connect_via_queue(self, address: str, pattern: Any, ttl: float) -> Any:
        raise TypeError("no queues")

    def close(self) -> None:
        raise OSError("bad transport close failed")


class _BadConnection(berrymq.transports.base.Connection):
    style = "oneway"

    def __init__(self, address: str) -> None:
        self.address = address

    def send(self, message: Message) -> None:
        pass

    def close(self) -> None:
        raise OSError("bad connection close failed")


def test_a_transport_or_connection_whose_close_raises_does_not_stop_the_close(
        caplog: pytest.LogCaptureFixture) -> None:
    """A probe found the rest of the bus left open: a TCP server still listening, no
    close hook run, the pool and the state never closed (and a second close did nothing)."""
    closed: list[str] = []

    class BadNet:
        @hookimpl
        def berrymq_register_transports(self, registry: Any) -> None:
            registry.add("bad", _BadTransport, plugin="badnet")

        @hookimpl
        def berrymq_close_bus(self, bus: Bus) -> None:
            closed.append("close hook")

    key = StateKey("test.closed", lambda bus: "value", close=closed.append)
    bus = Bus(multiplicity=1, plugins=PluginHost(Settings(), extra_plugins=[("badnet", BadNet())]))
    bus.transport("bad").listen("bad://x")
    bus.track_connection(bus.transport("bad").connect_oneway("bad://x", 60))
    tcp = bus.transport("tcp").listen("tcp://127.0.0.1:0")
    port = int(tcp.rsplit(":", 1)[1])
    outgoing = bus.transport("tcp").connect_oneway(tcp, 60)
    bus.track_connection(outgoing)
    bus.state(key)
    with caplog.at_level(logging.ERROR, logger="berrymq"), \
            pytest.raises(PluginError, match=r"plugin .badnet.*bad:// connection to bad://x raised OSError in "
                                             r"close\(\): bad connection close failed") as info:
        bus.close()
    assert info.value.plugin == "badnet"
    assert bus.closed and bus.pool is None and bus.connections() == [] and bus.transports() == {}
    assert closed == ["close hook", "value"]
    assert outgoing.closed  # type: ignore[attr-defined]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert "bad:// connection" in failures[0] and "bad connection close failed" in failures[0]
    assert "bad:// transport" in failures[1] and "bad transport close failed" in failures[1]
    bus.close()  # closed once, for good: nothing more to do, nothing raised
