"""berrymq._delivery and berrymq._hops: the one delivery loop, the hop count, the error policy."""

from __future__ import annotations

import logging

import pytest

from berrymq import Bus, Message, QueueFull
from berrymq._delivery import deliver
from berrymq._hops import hop_box
from berrymq.plugins import PluginHost


@pytest.fixture
def bus(berrymq_bus: Bus) -> Bus:
    return berrymq_bus


def test_deliver_runs_receivers_with_the_hop_count_plus_one_and_restores_it(bus: Bus) -> None:
    seen: list[int] = []
    bus.subscribe("h:*", lambda m: seen.append(hop_box()[0]), weak=False)
    box = hop_box()
    box[0] = 0
    errors = deliver(bus, bus._index.lookup(Message("h:x")[0]), Message("h:x", (), {}, 4))
    assert errors is None and seen == [5] and box[0] == 0


def test_every_path_hands_the_hop_count_on(bus: Bus) -> None:
    """send, talk (its reply), the pool and ask all go through deliver()."""
    hops: dict[str, int] = {}
    bus.subscribe("q:*", lambda m: (hops.__setitem__("q", m.hops), 1)[1], weak=False)
    bus.subscribe("r:*", lambda m: hops.__setitem__("r", m.hops), weak=False)
    bus.subscribe("relay:*", lambda m: bus.talk("q:x", "r:back"), weak=False)
    bus.twitter("relay:x")
    assert hops == {"q": 1, "r": 2}
    bus.set_multiplicity(2)
    hops.clear()
    bus.twitter("relay:x")
    assert bus.join(10)
    assert hops == {"q": 1, "r": 2}
    bus.set_multiplicity(0)
    assert bus.ask("q:x") == [1]


def test_the_error_policy(berrymq_plugin_host: PluginHost, caplog: pytest.LogCaptureFixture) -> None:
    def broken(message: Message) -> None:
        raise KeyError("boom")

    def full(message: Message) -> None:
        raise QueueFull("queue x:* is full")

    with Bus(plugins=berrymq_plugin_host) as quiet:
        quiet.subscribe("x:*", broken, weak=False)
        with caplog.at_level(logging.ERROR, logger="berrymq"):
            quiet.twitter("x:y")  # logged, not raised
        assert "failed on message x:y" in caplog.text
        quiet.subscribe("x:*", full, weak=False)
        with pytest.raises(QueueFull):  # a refusal always reaches the sender, alone
            quiet.twitter("x:y")
    with Bus(plugins=berrymq_plugin_host, raise_errors=True) as loud:
        loud.subscribe("x:*", broken, weak=False)
        loud.subscribe("x:*", full, weak=False)
        with pytest.raises(ExceptionGroup) as info:
            loud.twitter("x:y")
        assert [type(e) for e in info.value.exceptions] == [KeyError, QueueFull]
