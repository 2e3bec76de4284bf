"""berrymq.state: the typed extension slot of a bus."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from helpers import WAIT, wait_for

from berrymq import Bus, Queue
from berrymq.plugins import PluginHost
from berrymq.receivers.queues import SHARED_STORES
from berrymq.sources import RUNNING, running_adapters
from berrymq.sources.timer import IntervalTimer
from berrymq.state import StateKey


def test_a_value_is_made_once_per_bus_and_closed_with_it(berrymq_plugin_host: PluginHost) -> None:
    made: list[Bus] = []
    closed: list[str] = []

    def make(bus: Bus) -> list[str]:
        made.append(bus)
        return [bus.name]

    key: StateKey[list[str]] = StateKey("names", make, lambda v: closed.append(v[0]))
    first = Bus(plugins=berrymq_plugin_host, name="first")
    second = Bus(plugins=berrymq_plugin_host, name="second")
    assert first.extensions.peek(key) is None  # peek never makes it
    assert first.state(key) is first.state(key) == ["first"]
    assert second.state(key) == ["second"]
    assert made == [first, second]
    first.close()
    assert closed == ["first"] and first.extensions.peek(key) is None
    second.close()
    assert closed == ["first", "second"]


def test_racing_threads_get_one_value(berrymq_plugin_host: PluginHost) -> None:
    key: StateKey[object] = StateKey("one", lambda bus: object())
    with Bus(plugins=berrymq_plugin_host) as bus:
        seen = in_threads(8, lambda: bus.state(key))
    assert len({id(v) for v in seen}) == 1


def test_the_core_keeps_its_per_bus_state_in_the_slot(berrymq_plugin_host: PluginHost) -> None:
    with Bus(plugins=berrymq_plugin_host) as bus:
        one, two = Queue("s:*", shared=True, bus=bus), Queue("s:*", shared=True, bus=bus)
        assert list(bus.state(SHARED_STORES).values()) == [one._store]
        assert one._store is two._store and one._store.subscription is not None
        assert one._store.subscription.shared and not one._store.subscription.answers
        timer = IntervalTimer("beat", 60, bus=bus)
        assert running_adapters(bus) == [timer] == bus.state(RUNNING).adapters
    assert not timer.running  # stopped with its bus, by the slot
    other = Bus(plugins=berrymq_plugin_host)
    assert other.extensions.peek(SHARED_STORES) is None and running_adapters(other) == []
    other.close()


def test_a_factory_may_ask_for_other_state_of_its_bus(berrymq_plugin_host: PluginHost) -> None:
    inner: StateKey[list[str]] = StateKey("inner", lambda bus: ["inner"])
    outer: StateKey[list[str]] = StateKey("outer", lambda bus: [*bus.state(inner), "outer"])
    queues: StateKey[Queue] = StateKey("queue", lambda bus: Queue("f:*", shared=True, bus=bus))
    with Bus(plugins=berrymq_plugin_host) as bus:
        assert bus.state(outer) == ["inner", "outer"]  # used to deadlock on the state's lock
        queue = bus.state(queues)  # used to deadlock on the state's lock as well
        assert list(bus.state(SHARED_STORES).values()) == [queue._store]


def test_a_value_made_by_a_losing_racer_is_closed(berrymq_plugin_host: PluginHost) -> None:
    both_inside = threading.Barrier(2, timeout=10)
    closed: list[object] = []

    def make(bus: Bus) -> object:
        both_inside.wait()  # both threads run the factory at once
        return object()

    key: StateKey[object] = StateKey("raced", make, closed.append)
    with Bus(plugins=berrymq_plugin_host) as bus:
        seen = in_threads(2, lambda: bus.state(key))
        assert seen[0] is seen[1] is bus.state(key)
        assert len(closed) == 1 and closed[0] is not seen[0]


def in_threads(count: int, call: Callable[[], object]) -> list[object]:
    """What ``call`` returns in each of ``count`` threads started together."""
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(call())) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_factory_error_is_raised_as_itself_and_a_none_value_is_kept(
        berrymq_plugin_host: PluginHost) -> None:
    """A factory that raised was shown chained to the KeyError of the look-up ("During
    handling of the above exception...": a plugin author saw a KeyError of a StateKey
    first); a value of None is made once, not on every use."""
    def fail(bus: Bus) -> object:
        raise FileNotFoundError("nodir/m.jsonl")

    made: list[Bus] = []
    failing: StateKey[object] = StateKey("failing", fail)
    nothing: StateKey[None] = StateKey("nothing", made.append)
    with Bus(plugins=berrymq_plugin_host) as bus:
        try:
            bus.state(failing)
        except FileNotFoundError as exc:
            assert exc.__context__ is None and exc.__cause__ is None
        else:
            raise AssertionError("the factory's error was not raised")
        assert bus.state(nothing) is None and bus.state(nothing) is None
        assert made == [bus]


def test_closing_the_bus_lets_go_of_an_adapter_blocked_on_an_older_queue_at_once(
        berrymq_plugin_host: PluginHost) -> None:
    """A timer blocked putting a tick on a full queue made before it: the bus's state
    closed newest first, so the close waited for the timer's thread (5 s) before it
    closed the queue that kept it. The adapters are told first and waited for once the
    queues are closed; the tick the queue never stored is counted."""
    bus = Bus(plugins=berrymq_plugin_host)
    full = Queue("blocked:*", maxsize=1, put_timeout=float("inf"), bus=bus)
    timer = IntervalTimer("blocked", 0.01, bus=bus)
    wait_for(lambda: timer.count >= 2, what="the second tick")  # waits for room for ever
    started = time.monotonic()
    bus.close()
    took = time.monotonic() - started
    assert not timer._thread.is_alive() and not timer.running and full.closed
    assert took < 2.0, f"close() took {took:.1f} s"
    assert bus.losses.counts == {"refused, sent by an adapter: QueueFull": 1}
    assert full.get(timeout=WAIT).kwargs["tick"] == 1


def test_stop_is_called_first_and_its_close_after_the_others(
        berrymq_plugin_host: PluginHost) -> None:
    calls: list[str] = []
    plain: StateKey[str] = StateKey("plain", lambda bus: "plain", calls.append)
    waited: StateKey[str] = StateKey("waited", lambda bus: "waited", calls.append,
                                     stop=lambda value: calls.append(f"stop {value}"))
    with Bus(plugins=berrymq_plugin_host) as bus:
        bus.state(plain)
        bus.state(waited)  # newer: closed first, but for its stop
    assert calls == ["stop waited", "plain", "waited"]
