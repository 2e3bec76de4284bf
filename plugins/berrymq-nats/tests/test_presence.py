"""The view of peers (berrymq_nats.presence): what any client of the server publishes on
the presence subject is checked before it is kept, and the view is bounded. A node id
becomes a subject token (probes, the answer to ``hello``): one with a line break broke the
NATS protocol line of every bridge that probed it, and the view took whatever patterns
came (20 peers of 80,000 patterns: 0.5 GB, and each ask 80 times slower)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from berrymq_nats import NatsBridge
from berrymq_nats.presence import MAX_PATTERNS, MAX_PEER_PATTERNS
from berrymq_nats.testing import bridge_of, settle
from helpers import publish_raw

from berrymq import Bus

pytestmark = pytest.mark.broker

MakeBus = Callable[..., Bus]
Poll = Callable[..., None]


def presence(bridge: NatsBridge) -> str:
    return bridge.asking.presence_subject


def test_a_node_id_that_is_not_one_is_ignored_and_asks_go_on(
    nats_server: Any, make_bus: MakeBus, poll: Poll,
) -> None:
    """A fake peer whose node id holds CR LF, following everything: it does not enter
    the view (the probe to it made the server close the asker's connection at each ask,
    and each ask wait its whole timeout), and the ignored message is counted."""
    a, b = make_bus("a"), make_bus("b")
    ba, bb = bridge_of(a, nats_server.url), bridge_of(b, nats_server.url)
    b.subscribe("calc:*", lambda m: "b", weak=False)
    settle(bb)
    poll(lambda: b.node_id in ba.asking.peers, what="a to learn b's patterns")
    bad = ["z\r\nx", "a b", "x.y", "A" * 16, "f" * 65, 7, None]
    publish_raw(nats_server.url, presence(ba),
                [{"k": "here", "n": n, "p": ["*"]} for n in bad] + [{"k": "hello", "n": "z\r\nx"}])
    settle(ba)  # what the server routed before has been read
    assert set(ba.asking.peers) == {b.node_id}
    assert ba.asking.view.ignored == len(bad) + 1
    for _ in range(3):
        started = time.monotonic()
        assert a.ask("calc:add", timeout=5) == ["b"]
        assert time.monotonic() - started < 2.5
    assert ba.reconnects == 0 and bb.reconnects == 0
    assert ba.state == "connected"


def test_the_view_is_bounded_and_a_peer_over_it_follows_everything(
    nats_server: Any, make_bus: MakeBus, poll: Poll,
) -> None:
    """A peer announcing too many patterns, or an invalid one, or past the view's total,
    is kept as following everything: the view stays small, and an ask probes it (a fake
    peer: nobody listens on its node subject, so it leaves the view) rather than missing
    a real one."""
    a, b = make_bus("a"), make_bus("b")
    ba, bb = bridge_of(a, nats_server.url), bridge_of(b, nats_server.url)
    b.subscribe("calc:*", lambda m: "b", weak=False)
    settle(bb)
    poll(lambda: b.node_id in ba.asking.peers, what="a to learn b's patterns")
    many = [f"n{i}:a" for i in range(MAX_PEER_PATTERNS)]
    fakes = {f"{i:016x}": many for i in range(MAX_PATTERNS // MAX_PEER_PATTERNS + 5)}
    fakes["a" * 16] = [*many, "one:more"]
    fakes["b" * 16] = ["ok:a", "not valid:"]
    fakes["c" * 16] = ["ok:a", 5]
    publish_raw(nats_server.url, presence(ba),
                [{"k": "here", "n": n, "p": p} for n, p in fakes.items()])
    settle(ba)
    peers = ba.asking.peers
    assert set(fakes) <= set(peers)
    assert sum(len(p) for p in peers.values()) <= MAX_PATTERNS
    everything = {n for n in fakes if len(peers[n]) == 1}
    assert {"a" * 16, "b" * 16, "c" * 16} <= everything
    assert len(everything) >= 8  # 5 over the total, 3 by their own announcement
    assert ba.asking.expected(b.subscriptions()[0].pattern) >= everything | {b.node_id}
    started = time.monotonic()
    assert a.ask("calc:add", timeout=5) == ["b"]  # the fakes are probed: no one is there
    assert time.monotonic() - started < 2.5
    assert not everything & set(ba.asking.peers)
    assert ba.asking.view.ignored == 0
