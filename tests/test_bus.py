"""berrymq.bus: the one object users hold. What the Bus itself decides (its lifecycle,
its routes as seen from outside, whether a send may be refused); sending, delivery,
the pool, ask and peers have test modules of their own."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from berrymq import Bus, Message, Queue
from berrymq.plugins import PluginHost
from berrymq.settings import load_settings


def nothing(message: Message) -> None:
    pass


@pytest.fixture
def bus(berrymq_bus: Bus) -> Bus:
    return berrymq_bus


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


def test_started_says_whether_start_was_called() -> None:
    bus = Bus(start=False)
    assert not bus.started
    bus.start()
    assert bus.started
    bus.close()


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


def test_route_lists_the_subscriptions_in_registration_order(bus: Bus) -> None:
    first = bus.subscribe("job:*", nothing)
    second = bus.subscribe("*:done", nothing)
    bus.subscribe("task:*", nothing)
    assert bus.route("job:done") == (first, second)
    assert bus.route("job:*") == (first, second)  # a wildcard sender reaches both
    assert bus.route("other:started") == ()


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


def test_may_refuse_says_whether_anything_on_a_route_can_push_back(bus: Bus) -> None:
    """What a transport asks before answering a remote ``send_message`` ahead of its
    delivery: only a route of functions and Follower methods, with no worker pool and no
    peer to pass the message to, cannot refuse."""
    bus.subscribe("job:done", nothing)
    assert not bus.may_refuse("job:done")
    assert not bus.may_refuse("task:done")  # nobody follows it
    queue = Queue("job:*", maxsize=1, bus=bus)
    assert bus.may_refuse("job:done") and bus.may_refuse("job:started")
    assert not bus.may_refuse("task:done")
    queue.close()
    assert not bus.may_refuse("job:done")
    bus.subscribe("mine:x", nothing, kind="custom")  # a kind that does not say: it may
    assert bus.may_refuse("mine:x")
    bus.set_multiplicity(2)  # a worker pool waits for room, then refuses
    assert bus.may_refuse("job:done")


def test_may_refuse_with_a_peer_attached(bus: Bus) -> None:
    peer = Bus(name="may-refuse-peer")
    try:
        bus.subscribe("job:done", nothing)
        bus.transport("local").interconnect(peer.transport("local").listen("local://"), ttl=10)
        assert bus.may_refuse("job:done")  # a peer's full buffer refuses
        assert not bus.may_refuse("_job:done")  # a local identifier stays here
    finally:
        peer.close()
