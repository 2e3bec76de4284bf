"""berrymq.stats: a node's counters are the core's, per bus, so that every transport (the
JSON-RPC plugins, the NATS bridge) counts into the same ones."""

from __future__ import annotations

import pytest

from berrymq import Bus
from berrymq.plugins import PluginHost
from berrymq.stats import SAMPLES, NodeStats, stats_for


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


def test_the_rate_samples_are_the_last_120_with_now_among_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/status.md's ``history`` holds the last 120 samples; with the one of now beside
    a full deque it held 121 (found by an outside audit)."""
    stats = NodeStats()
    clock = [0.0]
    monkeypatch.setattr(stats, "uptime", lambda: clock[0])
    totals = {"messages_in": 0, "messages_out": 0, "bytes_in": 0, "bytes_out": 0}
    for second in range(1, 300):
        clock[0] = second + 0.5  # (half a second past each whole one: now is a sample too)
        samples = stats.sample(totals)
        assert len(samples) <= SAMPLES == 120
        clock[0] = second + 0.7  # between two samples: now is added, the oldest left out
        samples = stats.sample(totals)
        assert len(samples) == min(SAMPLES, second + 2), (second, len(samples))
        assert samples[-1][0] == second + 0.7
