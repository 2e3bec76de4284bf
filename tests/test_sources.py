"""Adapters: IntervalTimer and FileObserver, with real clocks and real files."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT

import berrymq
from berrymq import Bus, FileObserver, IntervalTimer, Message
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier, parse
from berrymq.plugins import PluginHost
from berrymq.registries import SourceRegistry
from berrymq.settings import Settings
from berrymq.sources import Adapter, running_adapters


def take_all(queue: berrymq.Queue) -> list[Message]:
    out = []
    while True:
        try:
            out.append(queue.get_nowait())
        except berrymq.Empty:
            return out


def write_atomically(path: Path, text: str) -> None:
    """Write beside the watched name, then rename into place: one change, seen whole."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- IntervalTimer -----------------------------------------------------------------------------


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


@pytest.mark.parametrize("interval", [0, -1, "1", True, None, float("nan")])
def test_timer_refuses_a_bad_interval(berrymq_bus: Bus, interval: Any) -> None:
    with pytest.raises(ValueError, match="interval must be a positive number"):
        IntervalTimer("x", interval)
    assert running_adapters(berrymq_bus) == []


@pytest.mark.parametrize(
    ("id_name", "error"),
    [("a:b", ValueError), ("*", ValueError), ("", berrymq.InvalidIdentifier),
     ("te*", berrymq.InvalidIdentifier), (3, TypeError)],
)
def test_timer_refuses_a_bad_name(berrymq_bus: Bus, id_name: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        IntervalTimer(id_name, 1)


@pytest.mark.parametrize(("plugin", "make"), [
    ("timer", lambda bus, tmp: IntervalTimer("x", 1, bus=bus)),
    ("fileobserver", lambda bus, tmp: FileObserver(str(tmp / "*"), "x", 1, bus=bus)),
])
def test_a_disabled_adapter_plugin_is_named(tmp_path: Path, plugin: str, make: Any) -> None:
    host = PluginHost(Settings(disable=(plugin,)))
    bus = Bus(plugins=host)
    try:
        with pytest.raises(berrymq.PluginNotAvailable) as info:
            make(bus, tmp_path)
        assert info.value.plugin == plugin
        assert repr(plugin) in str(info.value) and "not active" in str(info.value)
        assert running_adapters(bus) == []
    finally:
        bus.close()


# -- FileObserver ------------------------------------------------------------------------------


def test_file_observer_reports_created_modified_removed(
    berrymq_bus: Bus, tmp_path: Path
) -> None:
    (tmp_path / "old.txt").write_text("there before")
    (tmp_path / "ignored.log").write_text("not matched")
    events = berrymq.Queue("files:*")
    interval = 0.02
    with FileObserver(str(tmp_path / "*.txt"), "files", interval=interval):
        new = tmp_path / "new.txt"
        write_atomically(new, "one")
        created = events.get(timeout=WAIT)
        assert (created.id, created.args) == ("files:created", (str(new),))

        write_atomically(new, "two, longer")
        modified = events.get(timeout=WAIT)
        assert (modified.id, modified.args) == ("files:modified", (str(new),))

        with open(tmp_path / "old.txt", "a") as handle:
            handle.write(" and more")
        modified = events.get(timeout=WAIT)
        assert (modified.id, modified.args) == ("files:modified", (str(tmp_path / "old.txt"),))

        new.unlink()
        removed = events.get(timeout=WAIT)
        assert (removed.id, removed.args) == ("files:removed", (str(new),))

        (tmp_path / "other.log").write_text("not matched either")
        (tmp_path / "sub.txt").mkdir()  # a directory is not a file
        write_atomically(tmp_path / "last.txt", "x")
        last = events.get(timeout=WAIT)
    assert (last.id, last.args) == ("files:created", (str(tmp_path / "last.txt"),))
    assert events.empty()
    # Stopped means stopped: a change after the observer stopped sends nothing.
    write_atomically(tmp_path / "last.txt", "changed after the stop")
    with pytest.raises(berrymq.Empty):
        events.get(timeout=10 * interval)


def test_check_is_deterministic_and_ordered(berrymq_bus: Bus, tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "gone.txt", "same.txt"):
        (tmp_path / name).write_text(name)
    events = berrymq.Queue("obs:*")
    with FileObserver(str(tmp_path / "*.txt"), "obs", interval=3600) as observer:
        assert observer.check() == []
        (tmp_path / "z.txt").write_text("z")
        (tmp_path / "c.txt").write_text("c")
        (tmp_path / "b.txt").write_text("b, changed")
        (tmp_path / "a.txt").write_text("a, changed")
        (tmp_path / "gone.txt").unlink()
        expected = [
            ("created", str(tmp_path / "c.txt")),
            ("created", str(tmp_path / "z.txt")),
            ("modified", str(tmp_path / "a.txt")),
            ("modified", str(tmp_path / "b.txt")),
            ("removed", str(tmp_path / "gone.txt")),
        ]
        assert observer.check() == expected
        assert observer.check() == []
    assert [(m.action, m.args[0]) for m in take_all(events)] == expected
    assert observer.check() == []  # stopped: nothing more


def test_recursive_glob(berrymq_bus: Bus, tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    with FileObserver(str(tmp_path / "**" / "*.py"), "src", interval=3600) as observer:
        (deep / "mod.py").write_text("x = 1")
        (tmp_path / "top.py").write_text("y = 2")
        assert observer.check() == [
            ("created", str(deep / "mod.py")),
            ("created", str(tmp_path / "top.py")),
        ]


def test_watchdog_wakes_the_observer_before_the_interval(
    berrymq_bus: Bus, tmp_path: Path
) -> None:
    events = berrymq.Queue("wd:*")
    started = time.monotonic()
    with FileObserver(str(tmp_path / "*.txt"), "wd", interval=3600, watchdog=True):
        write_atomically(tmp_path / "fast.txt", "now")
        message = events.get(timeout=WAIT)  # the interval alone would take an hour
    assert (message.id, message.args) == ("wd:created", (str(tmp_path / "fast.txt"),))
    assert time.monotonic() - started < WAIT


def test_watchdog_needs_an_existing_directory(berrymq_bus: Bus, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FileObserver(str(tmp_path / "missing" / "*.txt"), "x", watchdog=True)
    assert running_adapters(berrymq_bus) == []


def test_polling_a_directory_that_appears_later(berrymq_bus: Bus, tmp_path: Path) -> None:
    later = tmp_path / "later"
    with FileObserver(str(later / "*.txt"), "later", interval=3600) as observer:
        later.mkdir()
        (later / "f.txt").write_text("f")
        assert observer.check() == [("created", str(later / "f.txt"))]


def test_file_observer_refuses_bad_arguments(berrymq_bus: Bus, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="glob"):
        FileObserver("", "x")
    with pytest.raises(ValueError, match="interval"):
        FileObserver(str(tmp_path / "*"), "x", interval=0)
    with pytest.raises(ValueError, match="id_name"):
        FileObserver(str(tmp_path / "*"), "x:created")


@pytest.fixture(autouse=True)
def no_leftover_adapters(berrymq_bus: Bus) -> Iterator[None]:
    yield
    assert running_adapters(berrymq_bus) == []


# -- sources of a user's plugin --------------------------------------------------------------


class Countdown(Adapter):
    """A user's source: sends ``countdown:tick`` until stopped."""

    kind = "countdown"

    def __init__(self, interval: float, *, bus: Bus | None = None) -> None:
        super().__init__(interval, bus=bus)
        self._start()

    def poll(self) -> None:
        self.bus.twitter("countdown:tick")

    def sends(self) -> list[Identifier]:
        return [parse("countdown:tick")]


class CountdownPlugin:
    @hookimpl
    def berrymq_register_sources(self, registry: SourceRegistry) -> None:
        registry.add("countdown", Countdown, plugin="countdown")


def test_a_plugin_registers_a_source_through_berrymq_register_sources() -> None:
    host = PluginHost(Settings(), entry_points=False, extra_plugins=[("countdown", CountdownPlugin())])
    assert host.source("countdown") is Countdown and host.sources.plugin_for("countdown") == "countdown"
    with Bus(plugins=host) as bus:
        ticks = berrymq.Queue("countdown:*", bus=bus)
        with Countdown(0.01, bus=bus) as countdown:
            assert ticks.get(timeout=WAIT).id == "countdown:tick"
            assert running_adapters(bus) == [countdown]
        assert running_adapters(bus) == []


def test_a_disabled_source_is_reported_by_name() -> None:
    host = PluginHost(Settings(disable=("countdown",)), entry_points=False,
                      extra_plugins=[("countdown", CountdownPlugin())])
    with Bus(plugins=host) as bus, pytest.raises(berrymq.PluginNotAvailable,
                                                  match="source 'countdown'.*not active"):
        Countdown(1, bus=bus)
