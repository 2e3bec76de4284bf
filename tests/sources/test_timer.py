"""berrymq.sources.timer: IntervalTimer, with a real clock."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, FullLink, drain, take_all

import berrymq
from berrymq import Bus, FileObserver, IntervalTimer, Message
from berrymq.plugins import PluginHost
from berrymq.sources import running_adapters


def test_timer_ticks_on_schedule_until_stopped(berrymq_bus: Bus) -> None:
    ticks = berrymq.Queue("beat:*")
    interval = 0.05
    started = time.monotonic()
    timer = IntervalTimer("beat", interval)
    try:
        got = [ticks.get(timeout=WAIT) for _ in range(4)]
        elapsed = time.monotonic() - started
    finally:
        timer.stop()
    assert [m.id for m in got] == ["beat:tick"] * 4
    assert [m.kwargs["tick"] for m in got] == [1, 2, 3, 4]
    assert all(isinstance(m.kwargs["time"], float) for m in got)
    # Ticks keep to the schedule: the 4th is at least 4 intervals after the start.
    assert elapsed >= 4 * interval * 0.95
    assert not timer.running and not timer._thread.is_alive()
    take_all(ticks)
    count = timer.count
    # Stopped means stopped: the thread has ended, nothing more arrives.
    with pytest.raises(berrymq.Empty):
        ticks.get(timeout=3 * interval)
    assert timer.count == count


def test_a_receiver_that_calls_sys_exit_does_not_stop_the_timer(
        berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """SystemExit ended the timer's thread without a word while ``running`` said True."""
    ticks = berrymq.Queue("beat:*")

    def quit_once(message: Message) -> None:
        if message.kwargs["tick"] == 1:
            raise SystemExit(0)

    berrymq_bus.subscribe("beat:tick", quit_once)
    with IntervalTimer("beat", 0.02) as timer:
        got = [ticks.get(timeout=WAIT).kwargs["tick"] for _ in range(3)]
        assert timer.running and timer._thread.is_alive()
    assert got == [1, 2, 3]
    assert "SystemExit raised in its thread, where it cannot end the process" in caplog.text


def test_timer_as_context_manager_and_in_the_network_picture(berrymq_bus: Bus) -> None:
    with IntervalTimer("clock@ops", 10) as timer:
        assert running_adapters(berrymq_bus) == [timer]
        assert "clock@ops:tick" in berrymq.show_network()
    assert running_adapters(berrymq_bus) == []
    assert not timer.running


def test_timer_in_a_namespace_reaches_only_that_namespace(berrymq_bus: Bus) -> None:
    in_ops = berrymq.Queue("clock@ops:*")
    default = berrymq.Queue("clock:*")
    with IntervalTimer("clock@ops", 0.02):
        message = in_ops.get(timeout=WAIT)
    assert message.namespace == "ops"
    assert default.empty()


def test_a_receiver_can_stop_the_timer_from_its_thread(berrymq_bus: Bus) -> None:
    stopped = threading.Event()
    timers: list[IntervalTimer] = []

    def on_tick(message: Message) -> None:
        timers[0].stop()  # runs in the timer's own thread: must not wait for itself
        stopped.set()

    berrymq.regist_function("selfstop:tick", on_tick)
    timers.append(IntervalTimer("selfstop", 0.02))
    assert stopped.wait(WAIT)
    timers[0]._thread.join(WAIT)
    assert not timers[0]._thread.is_alive()


def test_a_failing_receiver_does_not_stop_the_timer(berrymq_bus: Bus) -> None:
    calls: list[int] = []
    ok = berrymq.Queue("flaky:*")

    def flaky(message: Message) -> None:
        calls.append(message.kwargs["tick"])
        if message.kwargs["tick"] == 1:
            raise RuntimeError("first tick fails")

    berrymq.regist_function("flaky:tick", flaky)
    logger = logging.getLogger("berrymq")
    logger.disabled = True  # the error is logged; keep the test output quiet
    try:
        with IntervalTimer("flaky", 0.02):
            counts = [ok.get(timeout=WAIT).kwargs["tick"] for _ in range(3)]
    finally:
        logger.disabled = False
    assert counts == [1, 2, 3]
    assert calls[:3] == [1, 2, 3]


def test_closing_the_bus_stops_its_adapters(
    berrymq_plugin_host: PluginHost, tmp_path: Path
) -> None:
    bus = Bus(plugins=berrymq_plugin_host)
    timer = IntervalTimer("t", 10, bus=bus)
    observer = FileObserver(str(tmp_path / "*"), "f", 10, bus=bus)
    assert running_adapters(bus) == [timer, observer]
    bus.close()
    assert not timer.running and not observer.running
    assert not timer._thread.is_alive() and not observer._thread.is_alive()
    assert running_adapters(bus) == []


@pytest.mark.parametrize("interval", [0, -1, "1", True, None, float("nan"), float("inf"),
                                      threading.TIMEOUT_MAX * 2, 5e-324, 1e-7])
def test_timer_refuses_a_bad_interval(berrymq_bus: Bus, interval: Any) -> None:
    # (an infinite or huge interval was taken: the timer's thread then died at its first
    # wait, OverflowError, while the timer still said it was running; 5e-324 was taken,
    # and the timer logged an OverflowError some 5,600 times a second and sent nothing)
    with pytest.raises(ValueError, match="interval must be a positive number"):
        IntervalTimer("x", interval)
    assert running_adapters(berrymq_bus) == []


def test_the_longest_interval_runs_and_stops(berrymq_bus: Bus) -> None:
    with IntervalTimer("x", threading.TIMEOUT_MAX) as timer:
        timer._thread.join(0.2)
        assert timer._thread.is_alive() and timer.running  # waiting, not dead
    assert not timer._thread.is_alive()


def test_an_adapter_refuses_a_bus_that_is_no_bus(berrymq_bus: Bus) -> None:
    with pytest.raises(TypeError, match="IntervalTimer bus must be a berrymq.Bus, got 42"):
        IntervalTimer("x", 1, bus=42)  # type: ignore[arg-type]
    assert running_adapters(berrymq_bus) == []


def test_ticks_a_full_queue_refuses_are_counted_as_lost(
        berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """A refusal has no caller to reach in the timer's thread: counted in bus.losses (and
    flush() says so), logged once per burst, as in a worker thread; it was logged with a
    traceback at every tick and counted nowhere."""
    stored = berrymq.Queue("full:*", maxsize=1, on_full="refuse")
    refused = threading.Event()
    reason = "refused, sent by an adapter: QueueFull"
    with caplog.at_level(logging.ERROR, logger="berrymq"):
        with IntervalTimer("full", 0.01):
            deadline = time.monotonic() + WAIT
            while berrymq_bus.losses.counts.get(reason, 0) < 5 and time.monotonic() < deadline:
                refused.wait(0.01)
        lost = berrymq_bus.losses.counts.get(reason, 0)
        assert lost >= 5, berrymq_bus.losses.counts
        assert stored.qsize() == 1
        assert berrymq_bus.flush(WAIT) is False
    lines = [r for r in caplog.records if "refused" in r.getMessage()]
    assert 1 <= len(lines) < lost  # the first of the burst, not one per tick
    assert "IntervalTimer('full'" in lines[0].getMessage()
    assert all(r.exc_info is None for r in lines)


@pytest.mark.parametrize(
    ("id_name", "error"),
    [("a:b", ValueError), ("*", ValueError), ("", berrymq.InvalidIdentifier),
     ("te*", berrymq.InvalidIdentifier), (3, TypeError)],
)
def test_timer_refuses_a_bad_name(berrymq_bus: Bus, id_name: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        IntervalTimer(id_name, 1)


def test_a_tick_a_peer_refused_is_counted_once(
        berrymq_bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    """A peer's full outgoing buffer refuses every tick: the node counts each as ``not
    forwarded: QueueFull`` and marks the refusal it raises as counted. The timer's thread
    counted it again, as refused, sent by an adapter: two losses for one tick."""
    here = berrymq.Queue("peered:*")
    berrymq_bus.add_forwarder(FullLink())  # gone with the bus
    with caplog.at_level(logging.ERROR, logger="berrymq"):
        with IntervalTimer("peered", 0.01) as timer:
            drain(here, 3)  # the receivers here still have every tick
    ticks = timer.count  # the thread has ended: every tick is counted by now
    assert ticks >= 3
    assert berrymq_bus.losses.counts == {"not forwarded: QueueFull": ticks}
    assert not [r for r in caplog.records if "keeps running" in r.getMessage()]


def test_after_missed_ticks_the_timer_keeps_to_its_schedule(berrymq_bus: Bus) -> None:
    """Tick 1's receiver holds the timer's thread for 3.5 intervals: tick 2 goes at once,
    the missed ticks are skipped, and the ticks after keep to the schedule set at the
    start (due n intervals after it). They were sent an interval after the late tick:
    half an interval off the schedule from then on, a drift at each stall."""
    interval = 0.2
    held_until: list[float] = []
    arrived: queue.SimpleQueue[tuple[int, float]] = queue.SimpleQueue()
    release = threading.Event()  # never set: holds the thread for a measured time

    def on_tick(message: Message) -> None:
        if message.kwargs["tick"] == 1:
            while (left := held_until[0] - time.monotonic()) > 0:
                release.wait(left)
        arrived.put((message.kwargs["tick"], time.monotonic()))

    berrymq.regist_function("stall:tick", on_tick, weak=False)
    started = time.monotonic()
    held_until.append(started + 3.5 * interval)
    with IntervalTimer("stall", interval):
        got = [arrived.get(timeout=WAIT) for _ in range(7)]
    assert [tick for tick, _ in got] == [1, 2, 3, 4, 5, 6, 7]  # skipped ones not counted
    # how late each tick after the late one came, past its place in the schedule (a
    # loaded machine may make any one late; on schedule, they are not all late)
    offsets = [((at - started) % interval) for _, at in got[2:]]
    assert min(offsets) < interval / 4, [f"{o:.3f}" for o in offsets]
