"""berrymq.bursts: one log line per burst of alike events, with their count."""

from __future__ import annotations

import logging

import pytest

from berrymq.bursts import BurstLog

logger = logging.getLogger("berrymq.test.bursts")


def test_the_first_event_is_logged_and_the_rest_of_the_burst_summed_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    bursts = BurstLog(logger, interval=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert bursts.warning("refused %s", "a") is True
        assert [bursts.warning("refused %s", n) for n in range(9_999)] == [False] * 9_999
        now[0] += 5.0  # the interval is over: the next event writes the summary
        assert bursts.warning("refused %s", "b") is True
    assert [r.getMessage() for r in caplog.records] == [
        "refused a", "refused b (10000 such events since the last line)"]
