"""A message from NATS that a receiver here refuses (``QueueFull``: a busy ``async def``
receiver, a full bounded ``Queue``) has no publisher to be told: it is counted in the
bridge's losses (one log line per burst), not logged once per message and forgotten."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from berrymq_jsonrpc.status import status_snapshot
from berrymq_nats import closing as closing_module
from berrymq_nats.losses import REFUSED_HERE
from berrymq_nats.testing import bridge_of, settle, wait_until
from helpers import FullLink, bytes_held, held_async_receiver

from berrymq import Bus, Message, QueueFull
from berrymq.plugins import PluginHost

WAIT = 10.0


def test_a_refusal_by_a_busy_async_receiver_is_counted(nats_server: Any,
                                                       nats_host: PluginHost) -> None:
    sender = Bus(raise_errors=True, plugins=nats_host, name="sender")
    receiving = Bus(raise_errors=True, async_pending_limit=1, async_pending_wait=0,
                    plugins=nats_host, name="receiving")
    try:
        with held_async_receiver(receiving, "job:*") as (got, release):
            bridges = bridge_of(sender, nats_server.url), bridge_of(receiving, nats_server.url)
            settle(*bridges)
            for i in range(3):  # the first is held by the receiver; the next two are refused
                sender.twitter("job:x", i)
            losses = bridges[1].losses
            wait_until(lambda: losses.counts.get(REFUSED_HERE) == 2, WAIT, "two refusals counted")
            assert bridges[1].flush(WAIT) is False  # what was lost since the last flush
            # and in the bus's own count, which a node's /status and /metrics show
            assert receiving.losses.snapshot() == {f"nats: {REFUSED_HERE}": 2}
            assert status_snapshot(receiving)["lost"] == {
                "total": 2, "reasons": {f"nats: {REFUSED_HERE}": 2}}
            release()
            wait_until(lambda: got, WAIT, "the first message delivered")
            assert got == [0]
    finally:
        sender.close()
        receiving.close()


def test_a_message_a_peers_full_link_refused_is_counted_once(nats_server: Any,
                                                             nats_host: PluginHost) -> None:
    """A message from NATS that the receivers here took but one peer's full link did not
    is counted by the core (``not forwarded: QueueFull``), not again as refused here."""
    sender = Bus(plugins=nats_host, name="sender")
    receiving = Bus(plugins=nats_host, name="receiving")
    got: list[int] = []
    receiving.subscribe("job:*", lambda message: got.append(message.args[0]), weak=False)
    try:
        bridges = bridge_of(sender, nats_server.url), bridge_of(receiving, nats_server.url)
        receiving.add_forwarder(FullLink())
        settle(*bridges)
        sender.twitter("job:x", 1)
        wait_until(lambda: got == [1], WAIT, "the message delivered here")
        wait_until(lambda: receiving.losses.total == 1, WAIT, "the refused forward counted")
        assert receiving.losses.counts == {"not forwarded: QueueFull": 1}
        assert bridges[1].losses.counts == {}
    finally:
        sender.close()
        receiving.close()


def test_closing_the_bridge_before_its_messages_were_delivered_says_so(
        nats_server: Any, nats_host: PluginHost, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """close() waits a bounded time for the messages read from NATS to reach the
    receivers; when a slow receiver holds them past it, one warning says how many are
    still to come (close returned saying nothing)."""
    monkeypatch.setattr(closing_module, "CLOSE_DELIVERY_WAIT", 0.2)
    sender = Bus(plugins=nats_host, name="sender")
    receiving = Bus(plugins=nats_host, name="receiving")
    release = threading.Event()
    got: list[Any] = []
    receiving.subscribe("job:*", lambda m: (release.wait(WAIT), got.append(m.args[0])),
                        weak=False)
    try:
        bridges = bridge_of(sender, nats_server.url), bridge_of(receiving, nats_server.url)
        settle(*bridges)
        for i in range(5):
            sender.twitter("job:x", i)
        inbound = bridges[1].inbound
        wait_until(lambda: inbound.gathered == 5, WAIT, "five messages read from NATS")
        with caplog.at_level(logging.WARNING, logger="berrymq.nats"):
            bridges[1].close()
        [line] = [r.getMessage() for r in caplog.records if "not delivered after" in r.getMessage()]
        assert "closed with 5 message(s) read from NATS not delivered after 0.2s" in line
        release.set()
        wait_until(lambda: len(got) == 5, WAIT, "the five delivered after the close")
    finally:
        release.set()
        sender.close()
        receiving.close()


def test_a_refused_message_from_nats_is_not_kept_once_counted(nats_server: Any,
                                                              nats_host: PluginHost) -> None:
    """The refusal came up through the receiving bus's frames: had one of them still held
    it once counted, the exception, its traceback and their frames, the message among them,
    would keep each other until the cyclic collector ran, which with few large messages it
    seldom does. The collector is held off here."""
    def refuse(message: Message) -> None:
        raise QueueFull("no room")

    sender = Bus(raise_errors=True, plugins=nats_host, name="sender")
    receiving = Bus(raise_errors=True, plugins=nats_host, name="receiving")
    payload = "w" * (200 * 1024)
    try:
        receiving.subscribe("big:*", refuse, weak=False)
        bridges = bridge_of(sender, nats_server.url), bridge_of(receiving, nats_server.url)
        settle(*bridges)
        losses = bridges[1].losses

        def send_and_count() -> None:
            for i in range(10):  # 2 MiB refused
                sender.twitter("big:x", payload + str(i))
            assert bridges[0].flush(WAIT)
            wait_until(lambda: losses.counts.get(REFUSED_HERE) == 10, WAIT, "ten refusals")

        held = bytes_held(send_and_count)
    finally:
        sender.close()
        receiving.close()
    # the sender keeps its last message and what it encoded of it (a message to several
    # peers is encoded once): two messages whatever the count, against ten refused
    assert held < 4 * len(payload), f"{held:,} bytes held of 10 refused messages"
