"""Subjects that would not fit the NATS server's control line (berrymq_nats.subjects,
berrymq_nats.following): refused at the call, and the bridge goes on. Sent to the server,
such a line is answered with -ERR 'Maximum Control Line Exceeded', after which nats-py
closes the client for good."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from berrymq_nats import NatsBridge
from berrymq_nats.subjects import SubjectTooLong
from berrymq_nats.testing import Recorder, bridge_of, settle

from berrymq import Bus, Message, Queue

pytestmark = pytest.mark.broker

Pair = tuple[Bus, NatsBridge, Bus, NatsBridge]
LONG = "€" * 120 + ":" + "€" * 120  # a valid identifier: its subject fits once, not twice


def crosses(a: Bus, ba: NatsBridge, b: Bus, bb: NatsBridge, text: str) -> None:
    """A message still goes from a to b: both bridges work."""
    got = Recorder()
    with b.subscribe("still:*", got, weak=False):
        settle(bb)
        a.twitter("still:works", text)
        assert ba.flush(10) and got.wait(1) and got.args == [text]
    assert ba.state == bb.state == "connected"


def test_a_shared_queue_whose_subscription_would_not_fit_is_refused(
        pair: Pair, poll: Callable[..., None]) -> None:
    a, ba, b, bb = pair
    with pytest.raises(SubjectTooLong, match=r"subject and queue group of .* would take \d+ "
                                             r"bytes of the server's 4096-byte control line"):
        Queue(LONG, shared=True, bus=b)
    poll(lambda: all(str(s.pattern) != LONG for s in b.subscriptions()), 10,
         "the refused subscription to be cancelled")
    plain = Recorder()  # a plain receiver of the same pattern fits (one subject)
    b.subscribe(LONG, plain, weak=False)
    settle(bb)
    a.twitter(LONG, "long")
    assert ba.flush(10) and plain.wait(1) and plain.args == ["long"]
    crosses(a, ba, b, bb, "after")


def test_a_receiver_made_before_the_bridge_that_would_not_fit_is_left_out(
        nats_server: Any, make_bus: Callable[..., Bus]) -> None:
    a, b = make_bus("a"), make_bus("b")
    queue = Queue(LONG, shared=True, bus=b)  # no bridge yet: nothing to refuse it
    ba, bb = bridge_of(a, nats_server.url), bridge_of(b, nats_server.url)
    settle(ba, bb)
    assert ("1 patterns not subscribed (their NATS subjects would not fit the server's "
            f"control line): {LONG}") in bb.status()
    crosses(a, ba, b, bb, "still")
    assert queue.qsize() == 0


def test_a_message_whose_subject_would_not_fit_is_refused(
        nats_server: Any, make_bus: Callable[..., Bus]) -> None:
    """A long subject_prefix and a long identifier (each valid) make a subject too long."""
    a, b = make_bus("a"), make_bus("b")
    prefix = "p" * 1000
    ba = bridge_of(a, nats_server.url, subject_prefix=prefix)
    bb = bridge_of(b, nats_server.url, subject_prefix=prefix)
    long_ident = "\U0001F600" * 250 + ":a"
    local = Recorder()
    a.subscribe(long_ident, local, weak=False)
    a.twitter(long_ident, 1)  # local receivers have it; the bridge refused it, by name
    assert local.args == [1] and a.losses.counts == {"not forwarded: SubjectTooLong": 1}
    with pytest.raises(SubjectTooLong, match="not sent: its NATS subject would be"):
        ba.send(Message(long_ident, (2,)))
    assert ba.flush(10) and ba.losses.total == 0
    crosses(a, ba, b, bb, "after")
