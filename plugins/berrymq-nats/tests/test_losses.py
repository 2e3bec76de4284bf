"""Counting what was lost (berrymq_nats.losses): per reason, readable in code, and one log
line per burst rather than one per message."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from berrymq_nats.losses import CONTROL_UNSENT, IN_FLIGHT, QUEUE_FULL, UNDECODABLE, Losses


def test_losses_are_counted_and_logged_once_per_burst(
    caplog: pytest.LogCaptureFixture, poll: Callable[..., None],
) -> None:
    logger = logging.getLogger("berrymq.nats.test")
    losses = Losses(logger, "bridge X", interval=0.3)
    with caplog.at_level(logging.ERROR, logger="berrymq.nats.test"):
        losses.add(IN_FLIGHT, 3, "the server went away")
        assert [r.getMessage() for r in caplog.records] == [
            "bridge X lost 3 message(s): 3 in flight when the connection dropped; "
            "the server went away (3 lost in all)"]
        for _ in range(100):  # a burst: summed, reported when the interval is over
            losses.add(QUEUE_FULL, 1)
        assert len(caplog.records) == 1
        poll(lambda: len(caplog.records) == 2, 10, "the burst's report")
    assert caplog.records[1].getMessage() == (
        "bridge X lost 100 message(s): 100 refused by a local shared queue (103 lost in all)")
    assert losses.counts == {IN_FLIGHT: 3, QUEUE_FULL: 100} and losses.total == 103
    assert losses.summary() == ("lost 103 (3 in flight when the connection dropped, "
                                "100 refused by a local shared queue)")
    losses.add(IN_FLIGHT, 0)  # nothing lost: nothing said
    losses.close()
    assert len(caplog.records) == 2


def test_what_others_sent_is_counted_apart_from_this_processs_own() -> None:
    losses = Losses(logging.getLogger("berrymq.nats.test"), "bridge Y")
    losses.add(UNDECODABLE, 2)
    losses.add(CONTROL_UNSENT, 1)
    assert losses.own == 0 and losses.total == 3
    losses.add(IN_FLIGHT, 1)
    assert losses.own == 1 and losses.total == 4
    losses.close()
