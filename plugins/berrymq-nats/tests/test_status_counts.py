"""What the NATS bridge carries is in the node's ``/status`` as JSON-RPC's traffic is: the
messages it received from NATS are ``in``, those it published ``out``, with their bytes and
in ``recent``, in the same per-bus counters (:mod:`berrymq.stats`); its losses stay as they
were (``lost``, ``nats: REASON``); the bridge is one of the node's ``connections``
(:meth:`NatsBridge.status_row <berrymq_nats.bridge.NatsBridge.status_row>`), and
``/metrics``, written from the same snapshot, says so too."""

from __future__ import annotations

from typing import Any

import pytest
from berrymq_jsonrpc.status import metrics_text, status_snapshot
from berrymq_nats.losses import REFUSED_HERE
from berrymq_nats.testing import NatsServer, bridge_of, settle, wait_until
from prometheus_client.parser import text_string_to_metric_families

import berrymq
from berrymq import Bus, Identifier, Message
from berrymq.message import new_message
from berrymq.plugins import PluginHost
from berrymq.stats import stats_for

pytestmark = [pytest.mark.broker]

WAIT = 20.0
FUNCTION, QUEUED, QUEUE_SIZE = 100, 30, 10


def _nodes(nats_server: NatsServer, nats_host: PluginHost
           ) -> tuple[Bus, Bus, list[Message], berrymq.Queue]:
    """Node A (a function on ``nf:*``, a ``Queue("nq:*", maxsize=10)``) and a sender, each
    bridged to the server; the sender has sent ``nf:x`` 100 times and ``nq:x`` 30 times."""
    node = Bus(plugins=nats_host, name="a")
    sender = Bus(plugins=nats_host, name="sender")
    got: list[Message] = []
    node.subscribe("nf:*", got.append, weak=False)
    queue = berrymq.Queue("nq:*", maxsize=QUEUE_SIZE, bus=node)
    settle(bridge_of(node, nats_server.url), bridge_of(sender, nats_server.url))
    for i in range(FUNCTION):
        sender.twitter("nf:x", i)
    for i in range(QUEUED):
        sender.twitter("nq:x", i)
    assert bridge_of(sender, nats_server.url).flush(WAIT)
    bridge_of(node, nats_server.url).flush(WAIT)  # False: messages were refused here
    return node, sender, got, queue


def test_nats_traffic_is_counted_in_the_nodes_status(nats_server: NatsServer,
                                                     nats_host: PluginHost) -> None:
    node, sender, got, queue = _nodes(nats_server, nats_host)
    try:
        assert len(got) == FUNCTION and queue.qsize() == QUEUE_SIZE
        refused = QUEUED - QUEUE_SIZE
        wait_until(lambda: node.losses.total == refused, WAIT, "the refusals counted")
        status = status_snapshot(node)
        # in: every message that came in from another process, delivered or refused (as a
        # JSON-RPC node counts send_message); the refused ones are also lost, as before
        assert status["messages"]["in"] == FUNCTION + QUEUED
        assert status["messages"]["out"] == 0
        assert status["lost"] == {"total": refused, "reasons": {f"nats: {REFUSED_HERE}": refused}}
        assert status["bytes"]["in"] > 0
        recent = status["recent"]
        assert len(recent) == 50 and {r["direction"] for r in recent} == {"in"}
        assert recent[-1]["identifier"] == "nq:x"
        assert {r["peer"] for r in recent} == {nats_server.url}

        sent = status_snapshot(sender)
        assert sent["messages"]["out"] == FUNCTION + QUEUED
        assert sent["messages"]["in"] == 0
        assert sent["bytes"]["out"] > 0
        assert [(r["direction"], r["identifier"], r["peer"]) for r in sent["recent"][-1:]] == [
            ("out", "nq:x", nats_server.url)]
        assert sent["lost"]["total"] == 0

        # both nodes list the bridge among their connections, whatever its transport
        for snapshot, sent_count in ((status, 0), (sent, FUNCTION + QUEUED)):
            [row] = snapshot["connections"]
            assert row["scheme"] == "nats" and row["address"] == nats_server.url
            assert row["style"] == "interconnect" and row["direction"] == "out"
            assert row["age_s"] >= 0 and row["state"] == "connected"
            assert (row["pending"], row["sent"], row["lost"], row["refused"]) == (
                0, sent_count, 0, 0)
            samples = _metrics(snapshot)
            assert samples["berrymq_connections"] == {
                (("scheme", "nats"), ("style", "interconnect")): 1.0}
            assert samples["berrymq_messages_received_total"] == {
                (): float(snapshot["messages"]["in"])}
            assert samples["berrymq_messages_sent_total"] == {
                (): float(snapshot["messages"]["out"])}

        # a closed bridge is no longer listed (as a closed JSON-RPC connection is not)
        bridge_of(sender, nats_server.url).close()
        closed = status_snapshot(sender)
        assert closed["connections"] == []
        assert "berrymq_connections" not in {
            name for name, samples in _metrics(closed).items() if samples}
        assert closed["messages"]["out"] == FUNCTION + QUEUED  # the counts stay
    finally:
        sender.close()
        node.close()


def _metrics(snapshot: dict[str, Any]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` of ``snapshot`` as parsed by ``prometheus_client``: samples by name,
    each by its sorted labels."""
    parsed: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics_text(snapshot)):
        for sample in family.samples:
            parsed.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return parsed


def test_a_message_that_came_twice_is_a_duplicate(nats_server: NatsServer,
                                                  nats_host: PluginHost) -> None:
    """A message this process has seen (the same uid again) is dropped by design: counted
    ``in`` each time it came and a duplicate each time after the first, as over JSON-RPC."""
    node = Bus(plugins=nats_host, name="a")
    sender = Bus(plugins=nats_host, name="sender")
    got: list[Any] = []
    node.subscribe("job:*", lambda m: got.append(m.args[0]), weak=False)
    try:
        bridge = bridge_of(sender, nats_server.url)
        settle(bridge_of(node, nats_server.url), bridge)
        message = sender.stamp(new_message((Identifier("job:x"), (1,), {}, 0, None)))
        bridge.link.send_batch([message, message])  # the same uid twice
        assert bridge.flush(WAIT)
        assert bridge_of(node, nats_server.url).flush(WAIT)
        totals = stats_for(node).totals()
        assert got == [1]
        assert totals["messages_in"] >= 2
        assert totals["duplicates"] == totals["messages_in"] - 1
    finally:
        sender.close()
        node.close()


def test_a_reconnecting_bridge_shows_what_its_buffer_holds(
        nats_server: NatsServer, make_bus: Any, proxy_factory: Any) -> None:
    """While NATS is unreachable the bridge's row says ``reconnecting`` and ``pending`` is
    what waits in its disconnect buffer; once back, those are published (``sent``)."""
    proxy = proxy_factory(nats_server.port)
    node = make_bus("a")
    bridge = bridge_of(node, proxy.url, reconnect_wait=0.05)
    settle(bridge)
    proxy.cut()
    wait_until(lambda: bridge.state == "reconnecting", WAIT, "the bridge to see the loss")
    for i in range(3):
        node.twitter("job:go", i)
    [row] = status_snapshot(node)["connections"]
    assert (row["address"], row["state"], row["pending"], row["sent"]) == (
        proxy.url, "reconnecting", 3, 0)
    proxy.restore()
    assert bridge.flush(WAIT)
    [row] = status_snapshot(node)["connections"]
    assert (row["state"], row["pending"], row["sent"], row["lost"]) == ("connected", 0, 3, 0)
    assert status_snapshot(node)["messages"]["out"] == 3
