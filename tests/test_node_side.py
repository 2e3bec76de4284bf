"""berrymq._node_side: a bus's methods for transports and peers, and its network side (the
Node), made only by what gives the bus a peer or a transport, never by sending."""

from __future__ import annotations

import pytest

from berrymq import Bus, Identifier, Message
from berrymq.errors import BusClosed


class Keeper:
    """A forwarder that keeps what it was given."""

    def __init__(self) -> None:
        self.forwarded: list[Message] = []

    def forward(self, message: Message, reply_to: Identifier | None) -> None:
        self.forwarded.append(message)


def test_a_bus_that_only_sends_has_no_network_side(bus: Bus) -> None:
    bus.subscribe("job:*", print, weak=False)
    bus.twitter("job:done")
    assert bus.node is None
    assert bus.requesters() == [] and bus.connections() == [] and bus.transports() == {}
    bus.remove_forwarder(Keeper())  # nothing to remove: no error, still no node
    assert bus.node is None


def test_a_forwarder_gets_non_local_messages_until_removed(bus: Bus) -> None:
    keeper = Keeper()
    bus.add_forwarder(keeper)
    assert bus.node is not None
    bus.twitter("job:done", 1)
    bus.twitter("_private:done", 2)  # local: stays in this process
    assert [(m.id, m.args) for m in keeper.forwarded] == [("job:done", (1,))]
    assert keeper.forwarded[0].uid is not None
    bus.remove_forwarder(keeper)
    bus.remove_forwarder(keeper)  # idempotent
    bus.twitter("job:done", 3)
    assert len(keeper.forwarded) == 1


def test_a_message_is_stamped_once(bus: Bus) -> None:
    stamped = bus.stamp(Message("job:done"))
    assert stamped.uid is not None
    assert bus.stamp(stamped).uid == stamped.uid


def test_a_peers_message_is_taken_once(bus: Bus) -> None:
    got: list[Message] = []
    bus.subscribe("job:*", got.append, weak=False)
    message = Message("job:done", (1,), {}, 0, "uid-000000000001")
    assert bus.receive(message) is True
    assert bus.receive(message) is False  # came round a cycle: dropped
    assert [(m.id, m.hops) for m in got] == [("job:done", 1)]
    assert bus.first_request("ask-1") is True and bus.first_request("ask-1") is False


def test_a_closed_bus_takes_no_peer() -> None:
    bus = Bus(name="closed-node-side")
    bus.close()
    with pytest.raises(BusClosed, match="add a peer"):
        bus.add_forwarder(Keeper())
