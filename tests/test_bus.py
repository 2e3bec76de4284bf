"""berrymq.bus: the one object users hold. What the Bus itself decides (its lifecycle,
its core settings, waiting with join and flush); its subscription methods, sending,
delivery, the pool, ask and peers have test modules of their own."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from berrymq import Bus, BusClosed, Message, Queue
from berrymq.errors import SettingsError
from berrymq.plugins import PluginHost
from berrymq.settings import MAX_HOP_LIMIT, MAX_MULTIPLICITY, load_settings
from berrymq.state import StateKey


def test_a_closed_bus_forgets_its_receivers_and_closes_once() -> None:
    got: list[str] = []
    with Bus(name="closing") as bus:
        bus.subscribe("job:*", lambda m: got.append(m.id), weak=False)
        bus.twitter("job:one")
        assert len(bus.subscriptions()) == 1
    assert got == ["job:one"] and bus.subscriptions() == []
    bus.twitter("job:two")  # nobody follows any more: nothing runs, nothing fails
    assert got == ["job:one"]
    bus.close()  # a second close does nothing


def test_a_closed_bus_refuses_what_it_would_start_and_never_stop() -> None:
    """Receivers, worker threads, a new start, transports, per-bus state: nothing would
    close them, since a second close() does nothing. Each is refused by name."""
    before = set(threading.enumerate())
    bus = Bus(name="shut", start=False)
    bus.close()
    assert bus.closed
    refusals = [
        ("add a receiver of job:*", lambda: bus.subscribe("job:*", print, weak=False)),
        ("add a receiver of job:*", lambda: Queue("job:*", bus=bus)),
        ("start 3 worker thread(s)", lambda: bus.set_multiplicity(3)),
        ("add a transport or a peer", lambda: bus.transport("local")),
        ("make its threads", lambda: bus.state(StateKey("threads", list, list.clear))),
    ]
    for action, refused in refusals:
        with pytest.raises(BusClosed, match=f"bus 'shut' is closed; cannot {re.escape(action)}"):
            refused()
    bus.start()  # a closed bus stays closed: no plugin joins it
    assert not bus.started
    assert bus.state(StateKey("counts", lambda bus: [0])) == [0]  # nothing to close
    bus.losses.add("test", logging.WARNING, "a loss after close is still counted")
    assert bus.losses.snapshot() == {"test": 1}
    bus.set_multiplicity(0)  # as close() itself does
    assert bus.ask("job:done") == [] and not bus.started
    bus.twitter("job:done")  # sending still works, and reaches nobody
    assert set(threading.enumerate()) <= before


def test_a_closed_bus_that_had_peers_takes_no_new_ones() -> None:
    bus = Bus(name="was-networked")
    bus.transport("local")  # the bus has a node now
    bus.losses.add("test", logging.WARNING, "a loss before close")
    bus.close()
    with pytest.raises(BusClosed, match="cannot add a local transport"):
        bus.transport("local")
    with pytest.raises(BusClosed, match="cannot add a peer"):
        bus.add_forwarder(object())  # type: ignore[arg-type]
    assert bus.losses.snapshot() == {"test": 1}  # what was counted before stays readable


def test_close_drains_the_pool_while_its_receivers_may_still_ask() -> None:
    """The messages already handed to the worker pool run as close() drains it, and a
    receiver of them that asks the bus's other receivers still gets their replies."""
    bus = Bus(name="draining", multiplicity=1)
    release = threading.Event()
    answers: list[object] = []
    bus.subscribe("job:hold", lambda message: release.wait(10), weak=False)
    bus.subscribe("job:run", lambda message: answers.append(bus.ask("job:quote", timeout=10)),
                  weak=False)
    bus.subscribe("job:quote", lambda message: "yes", weak=False)
    bus.twitter("job:hold")  # the one worker holds on: the next two wait in its queue
    bus.twitter("job:run")
    bus.twitter("job:run")
    release.set()
    bus.close()
    assert answers == [["yes"], ["yes"]]


def test_a_settings_file_multiplicity_above_the_maximum_is_refused_naming_its_line(
        tmp_path: Path) -> None:
    """Refused when the file is read (so ``berrymq plugins`` reports it), not first when a
    bus starts its pool (which took the process's memory until the system said no)."""
    path = tmp_path / "berrymq.toml"
    path.write_text("[berrymq]\nmultiplicity = 100000000\n")
    with pytest.raises(SettingsError, match=rf"^{re.escape(str(path))}:2: multiplicity must be "
                                            rf"at most {MAX_MULTIPLICITY} worker threads"):
        load_settings(path)
    with pytest.raises(ValueError, match=f"at most {MAX_MULTIPLICITY} worker threads"):
        Bus(multiplicity=MAX_MULTIPLICITY + 1, start=False)


def test_a_hop_limit_over_the_maximum_is_refused_and_the_maximum_holds_a_loop() -> None:
    """hop_limit=300 was taken: a receiver that sent its own message again ended in a
    RecursionError at about 250 hops, logged as an ordinary failure, the loop neither
    counted nor named."""
    with pytest.raises(ValueError, match=rf"hop_limit must be at most {MAX_HOP_LIMIT} "):
        Bus(hop_limit=MAX_HOP_LIMIT + 1, start=False)
    with Bus(hop_limit=MAX_HOP_LIMIT, raise_errors=True) as bus:
        runs = []

        def again(message: Message) -> None:
            runs.append(message.hops)
            bus.twitter("loop:go")

        bus.subscribe("loop:go", again)
        bus.twitter("loop:go")
        assert len(runs) == MAX_HOP_LIMIT
        assert bus.losses.counts == {"hop limit": 1}


def test_a_core_setting_given_to_the_bus_beats_the_file_which_beats_the_default(
        tmp_path: Path) -> None:
    path = tmp_path / "berrymq.toml"
    path.write_text("[berrymq]\npool_queue_size = 3\n")
    host = PluginHost(load_settings(path))
    bus = Bus(pool_queue_size=5, plugins=host)
    assert bus.core_setting("pool_queue_size", 7) == 5
    bus.close()
    bus = Bus(plugins=host)
    assert bus.core_setting("pool_queue_size", 7) == 3
    assert bus.core_setting("pool_queue_wait", 0.25) == 0.25
    assert bus.core_setting("pool_queue_wait") is None
    bus.close()


def test_join_and_flush_without_pool_or_peers_are_true_at_once(bus: Bus) -> None:
    assert bus.multiplicity == 0
    assert bus.join(0) is True
    assert bus.flush(0) is True


def test_flush_waits_for_the_pool(bus: Bus) -> None:
    release = threading.Event()
    bus.subscribe("slow:*", lambda m: release.wait(10), weak=False)
    bus.set_multiplicity(1)
    bus.twitter("slow:x")
    assert bus.flush(0.05) is False  # the worker is still in the receiver
    release.set()
    assert bus.flush(10) is True


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"hop_limit": "x"}, TypeError, "hop_limit must be an integer, got str"),
    ({"hop_limit": 2.9}, TypeError, "hop_limit must be an integer, got float"),  # not truncated
    ({"hop_limit": 0}, ValueError, "hop_limit must be at least 1, got 0"),
    ({"raise_errors": "false"}, TypeError, "raise_errors must be true or false, got str"),
    ({"multiplicity": True}, TypeError, "multiplicity must be an integer, got bool"),
    ({"pool_queue_size": "x"}, TypeError, "pool_queue_size must be an integer, got str"),
    ({"pool_queue_size": 0}, ValueError, "pool_queue_size must be at least 1, got 0"),
    ({"pool_queue_wait": float("nan")}, ValueError, "pool_queue_wait must be 0 or more, got nan"),
    ({"pool_queue_wait": "1"}, TypeError, "pool_queue_wait must be an integer or a number"),
])
def test_bad_arguments_are_refused_at_once_naming_them(
        berrymq_plugin_host: PluginHost, arguments: dict[str, Any], error: type[Exception],
        message: str) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        Bus(plugins=berrymq_plugin_host, **arguments)
