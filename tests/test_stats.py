"""berrymq.stats: a node's counters are the core's, per bus, so that every transport (the
JSON-RPC plugins, the NATS bridge) counts into the same ones."""

from __future__ import annotations

from berrymq import Bus
from berrymq.plugins import PluginHost
from berrymq.stats import NodeStats, stats_for


class _Peer:
    """A transport's object for a peer: it says who it is when read, not when counted."""

    def __init__(self) -> None:
        self.where = "not known yet"

    def __str__(self) -> str:
        return f"peer at {self.where}"


def test_the_counters_are_per_bus(berrymq_plugin_host: PluginHost) -> None:
    with Bus(plugins=berrymq_plugin_host) as first, Bus(plugins=berrymq_plugin_host) as second:
        assert stats_for(first) is stats_for(first)
        stats_for(first).message_in("job:x", None)
        assert stats_for(first).totals()["messages_in"] == 1
        assert stats_for(second).totals()["messages_in"] == 0


def test_a_peer_is_shown_as_its_str_when_read() -> None:
    stats = NodeStats()
    peer = _Peer()
    stats.message_in("job:a", peer)
    stats.message_out("job:b", "nats://127.0.0.1:4222")
    stats.message_out("job:c", None)
    peer.where = "tcp://127.0.0.1:5000"  # learnt after the message was counted
    assert [(r["direction"], r["identifier"], r["peer"]) for r in stats.recent_messages()] == [
        ("in", "job:a", "peer at tcp://127.0.0.1:5000"),
        ("out", "job:b", "nats://127.0.0.1:4222"),
        ("out", "job:c", None),
    ]
