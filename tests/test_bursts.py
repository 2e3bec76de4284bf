"""berrymq.bursts: one log line per burst of alike events, with their count."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
from helpers import clean_env

from berrymq.bursts import BurstLog, BurstLogs

logger = logging.getLogger("berrymq.test.bursts")


class Later:
    """A schedule that runs nothing by itself: the test runs what was scheduled."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, call: Callable[[], None]) -> None:
        self.calls.append((delay, call))

    def run(self) -> None:
        calls, self.calls = self.calls, []
        for _, call in calls:
            call()


def burst_log(start: float) -> tuple[list[float], Later, BurstLog]:
    """A BurstLog of 5-second intervals on a clock (``now[0]``) and a schedule of the test's."""
    now = [start]
    later = Later()
    return now, later, BurstLog(logger, interval=5.0, clock=lambda: now[0], schedule=later)


def test_the_first_event_is_logged_and_the_rest_of_the_burst_summed_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    now, later, bursts = burst_log(1000.0)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert bursts.warning("refused %s", "a") is True
        assert [bursts.warning("refused %s", n) for n in range(9_999)] == [False] * 9_999
        assert [delay for delay, _ in later.calls] == [5.0]  # one closing line, scheduled
        now[0] += 5.0  # the interval is over: the next event writes the summary
        assert bursts.warning("refused %s", "b") is True
        later.run()  # nothing left to say
    assert [r.getMessage() for r in caplog.records] == [
        "refused a", "refused b (10000 such events since the last line)"]


def test_a_burst_that_stops_is_summed_up_once_its_interval_is_over(
        caplog: pytest.LogCaptureFixture) -> None:
    """No later event is needed for the count of the last ones to reach the log."""
    now, later, bursts = burst_log(50.0)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        bursts.error("link %s gone", 1)
        now[0] += 1.0
        for n in range(2, 301):
            bursts.error("link %s gone", n)
        assert [delay for delay, _ in later.calls] == [4.0]
        now[0] += 4.0
        later.run()
        assert bursts.error("link %s gone", 301) is False  # within the new interval
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "link 1 gone"),
        (logging.ERROR, "link 300 gone (299 such events since the last line)")]


def test_by_default_the_closing_line_comes_by_itself() -> None:
    # A logger of its own that does not pass records on: the timer thread's record would
    # otherwise reach the root logger's handlers after this test, in the next one's caplog.
    timed = logging.getLogger("berrymq.test.bursts.timer")
    timed.propagate = False
    bursts = BurstLog(timed, interval=0.2)
    lines: list[str] = []
    both = threading.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())
            if len(lines) == 2:
                both.set()

    handler = Collect(logging.WARNING)
    timed.addHandler(handler)
    try:
        bursts.warning("odd %d", 1)
        bursts.warning("odd %d", 2)
        bursts.warning("odd %d", 3)
        assert both.wait(10), "the end of the burst was never logged"
    finally:
        timed.removeHandler(handler)
    assert lines == ["odd 1", "odd 3 (2 such events since the last line)"]


def test_flush_writes_the_burst_so_far_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """What a closing owner calls: the closing line now, not when a timer would have run
    (a daemon timer does not outlive the process)."""
    _, later, bursts = burst_log(10.0)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        bursts.warning("freed %d", 1)
        bursts.warning("freed %d", 2)
        bursts.warning("freed %d", 3)
        bursts.flush()
        later.run()  # the timer, later: nothing more to say
        bursts.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "freed 1", "freed 3 (2 such events since the last line)"]


def test_discard_drops_the_burst_so_far(caplog: pytest.LogCaptureFixture) -> None:
    """What an owner calls when the events no longer hold (a server not reached was
    reached): the closing line due at the end of the interval is not written; a later
    burst is logged as usual."""
    now, later, bursts = burst_log(10.0)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        bursts.warning("unreached %d", 1)
        bursts.warning("unreached %d", 2)
        bursts.discard()
        later.run()  # the timer of the closing line: nothing to say
        bursts.flush()
        now[0] = 20.0
        bursts.warning("unreached %d", 3)
    assert [r.getMessage() for r in caplog.records] == ["unreached 1", "unreached 3"]


def test_a_closing_line_of_one_event_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """One event after the first line: its closing line carries its count like any other
    (a bare line read as the first of a new burst)."""
    _, later, bursts = burst_log(10.0)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        bursts.warning("freed %d", 1)
        bursts.warning("freed %d", 2)
        later.run()
    assert [r.getMessage() for r in caplog.records] == [
        "freed 1", "freed 2 (1 such event since the last line)"]


def test_burst_logs_count_each_kind_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    """Refusals of two reasons: each line counts the events of its own reason (one log
    for both summed 99 refusals of one reason under the text of the other)."""
    logs = BurstLogs(logger, interval=60.0)
    assert logs.of("full") is logs.of("full")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for i in range(99):
            logs.of("full").warning("queue full %d", i)
        logs.of("large").warning("too large")
        logs.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "queue full 0", "too large", "queue full 98 (98 such events since the last line)"]


#: A program with a BurstLog at module level (no owner closes it) that logs a burst and
#: ends at once, well within the interval whose timer would write the closing line.
MODULE_LEVEL_BURST = """
import logging
from berrymq.bursts import BurstLog

_odd = BurstLog(logging.getLogger("berrymq.child"), interval=3600)
for n in range(1, 6):
    _odd.warning("odd line %d", n)
"""


def test_a_burst_under_way_is_written_when_the_process_exits() -> None:
    """The closing line of a module-level BurstLog is written at interpreter exit: its
    timer is a daemon thread that dies with the process, and no owner flushes it."""
    child = subprocess.run([sys.executable, "-c", MODULE_LEVEL_BURST], capture_output=True,
                           text=True, timeout=60, env=clean_env())
    assert child.returncode == 0, child.stderr
    assert child.stderr.splitlines() == [
        "odd line 1", "odd line 5 (4 such events since the last line)"], child.stderr
