"""berrymq._index: subscriptions filed by pattern shape, and the routes they make (the
cache itself: tests/test_routes.py)."""

from __future__ import annotations

import gc

import pytest
from helpers import nothing

from berrymq import Bus, Message


def other(message: Message) -> None:
    pass


def cached(bus: Bus, key: object) -> object:
    return bus.routes.get(key)


@pytest.mark.parametrize("pattern", ["job:done", "job:*", "*:done", "*:*", "job"])
def test_every_pattern_shape_is_found_on_a_route_miss(bus: Bus, pattern: str) -> None:
    bus.subscribe("elsewhere:done", other)
    subscription = bus.subscribe(pattern, nothing)
    assert bus.route("job:done") == (subscription,)
    assert bus.route("job@ns:done") == ()  # another namespace


def test_routes_keep_registration_order_across_shapes(bus: Bus) -> None:
    subs = [bus.subscribe(p, nothing) for p in ("*:*", "job:done", "*:done", "job:*")]
    assert bus.route("job:done") == tuple(subs)
    assert bus.route("job:*") == tuple(subs)  # a wildcard sender reaches every shape
    assert bus.route("*:done") == tuple(subs)


def test_a_subscription_invalidates_only_the_routes_it_is_part_of(bus: Bus) -> None:
    bus.subscribe("a:x", nothing)
    for name in ("a:x", "a:y", "b:x", "b:y"):
        bus.twitter(name)
    kept = {name: cached(bus, name) for name in ("b:x", "b:y")}
    bus.subscribe("a:*", other)  # touches a:x and a:y only
    assert cached(bus, "a:x") is None and cached(bus, "a:y") is None
    assert all(cached(bus, name) is route for name, route in kept.items())
    bus.subscribe("*:y", other)  # touches b:y (a:y is gone already)
    assert cached(bus, "b:y") is None and cached(bus, "b:x") is kept["b:x"]
    bus.subscribe("*:*", other)  # touches everything
    assert cached(bus, "b:x") is None
    assert [s.receiver for s in bus.route("a:y")] == [other, other, other]


def test_a_cancel_invalidates_only_the_routes_it_is_part_of(bus: Bus) -> None:
    subscription = bus.subscribe("a:x", nothing)
    bus.subscribe("b:x", nothing)
    bus.twitter("a:x")
    bus.twitter("b:x")
    kept = cached(bus, "b:x")
    subscription.cancel()
    assert cached(bus, "a:x") is None and cached(bus, "b:x") is kept
    assert bus.route("a:x") == ()


def test_a_wildcard_sender_route_is_invalidated_by_any_matching_change(bus: Bus) -> None:
    bus.twitter("*:x")
    assert cached(bus, "*:x") is not None
    bus.subscribe("job:x", nothing)
    assert cached(bus, "*:x") is None
    assert len(bus.route("*:x")) == 1


def test_a_collected_receiver_leaves_index_and_routes(bus: Bus) -> None:
    def gone(message: Message) -> None:
        pass

    bus.subscribe("a:x", gone)
    bus.twitter("a:x")
    del gone
    gc.collect()
    assert bus.route("a:x") == ()
    assert bus.subscriptions() == []
    assert not bus.index._buckets and not bus.index._owners


def test_cancelling_many_receivers_of_one_pattern_keeps_the_rest(bus: Bus) -> None:
    receivers = [lambda m, i=i: None for i in range(2000)]
    subs = [bus.subscribe("same:x", r, weak=False) for r in receivers]
    for sub in subs[::2]:
        sub.cancel()
    assert bus.route("same:x") == tuple(subs[1::2])
    for sub in subs[1::2]:
        sub.cancel()
    assert bus.route("same:x") == () and not bus.index._buckets


def test_a_guard_change_invalidates_the_routes_of_its_pattern(bus: Bus) -> None:
    got: list[str] = []
    subscription = bus.subscribe("g:x", lambda m: got.append(m.id), weak=False)
    bus.twitter("g:x")
    bus.set_guard(subscription, lambda m: False)
    bus.twitter("g:x")
    assert got == ["g:x"]


def test_a_guard_change_reaches_routes_built_after_it(bus: Bus) -> None:
    """The route entry of a subscription is made once and shared by its routes: a guard
    set later is in the entries of the routes built after it (and in no stale one)."""
    got: list[str] = []
    subscription = bus.subscribe("g:*", lambda m: got.append(m.id), weak=False)
    bus.set_guard(subscription, lambda m: m.id != "g:y")
    bus.twitter("g:x")
    bus.twitter("g:y")
    bus.set_guard(subscription, None)
    bus.twitter("g:y")
    assert got == ["g:x", "g:y"]


def test_cached_routes_share_the_entries_of_their_subscriptions(bus: Bus) -> None:
    """Each route held a tuple of its own per receiver: with 300 subscriptions matching
    every identifier, a cached identifier cost 23 KB (a soak of a node: 672 MB for
    30,000 identifiers), where the 300 entries it points to are 2.4 KB of pointers."""
    for _ in range(300):
        bus.subscribe("*:*", other, weak=False)
    for i in range(3):
        bus.twitter(f"n{i}:x")
    routes = [cached(bus, f"n{i}:x") for i in range(3)]
    entries = [route[1] for route in routes]  # type: ignore[index]
    assert all(len(route_entries) == 300 for route_entries in entries)
    assert all(a is b for a, b in zip(entries[0], entries[1], strict=True))
    assert all(a is b for a, b in zip(entries[0], entries[2], strict=True))
