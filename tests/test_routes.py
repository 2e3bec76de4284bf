"""berrymq._routes: the route cache, bounded in identifiers and in route entries."""

from __future__ import annotations

from helpers import nothing

from berrymq import Bus, Identifier, Message
from berrymq._routes import ROUTE_CACHE_ENTRIES, ROUTE_CACHE_LIMIT


def other(message: Message) -> None:
    pass


def cached(bus: Bus, key: object) -> object:
    return bus.routes.get(key)


def test_the_route_cache_evicts_the_oldest_route_instead_of_clearing(bus: Bus) -> None:
    assert ROUTE_CACHE_LIMIT >= 40_000  # 20,000 identifiers cycle without a miss
    bus.subscribe("*:run", nothing)
    bus.index.limit = 3
    for name in ("a:run", "b:run", "c:run"):
        bus.twitter(name)
    bus.twitter("d:run")  # full: a:run goes, the others stay
    assert cached(bus, "a:run") is None
    assert all(cached(bus, n) is not None for n in ("b:run", "c:run", "d:run"))
    assert len(bus.routes) == 3


def test_the_route_cache_counts_identifiers_not_the_keys_they_were_sent_by(bus: Bus) -> None:
    bus.subscribe("*:run", nothing)
    bus.index.limit = 3
    for name in ("a:run", "b:run", "c:run"):
        bus.twitter(name)
        bus.twitter(Identifier(name))  # a second key for the same identifier
    assert all(cached(bus, n) is not None for n in ("a:run", "b:run", "c:run"))
    bus.twitter("d:run")  # full: a:run goes, with both its keys
    assert cached(bus, "a:run") is None
    assert all(cached(bus, n) is not None for n in ("b:run", "c:run", "d:run"))
    assert len(bus.routes) == 5


def test_eviction_skips_routes_forgotten_meanwhile_and_its_queue_stays_bounded(bus: Bus) -> None:
    bus.subscribe("*:run", nothing)
    index = bus.index
    index.limit = 3
    for name in ("a:run", "b:run", "c:run"):
        bus.twitter(name)
    with bus.subscribe("b:*", other):  # forgets b:run's route (twice: on subscribe and cancel)
        pass
    bus.twitter("d:run")  # not full: nothing goes
    bus.twitter("e:run")  # full: a:run goes (b:run, first in the queue, is already gone)
    assert cached(bus, "a:run") is None
    assert all(cached(bus, n) is not None for n in ("c:run", "d:run", "e:run"))
    for i in range(500):  # routes forgotten as fast as they are made
        bus.twitter(f"x{i}:run")
        with bus.subscribe(f"x{i}:*", other):
            pass
    assert len(bus.routes) <= 3
    assert len(index.cache._route_order) <= 2 * len(index.cache._route_keys) + 64 + 1


def test_an_identifier_sent_as_text_and_as_identifier_shares_one_route(bus: Bus) -> None:
    bus.subscribe("a:x", nothing)
    bus.twitter("a:x")
    assert bus.route("a:x")  # looks up by the parsed Identifier: the same route
    index = bus.index
    assert len(index.cache._route_keys) == 1
    bus.subscribe("a:*", other)
    assert not bus.routes  # both keys went together


def test_the_route_cache_is_bounded_in_route_entries_too(bus: Bus) -> None:
    """Many receivers of every identifier (a node's clients holding ``*:*`` queues) and
    ever new identifiers: ``limit`` routes of that many entries each would be gigabytes.
    The routes cached first go until the entries fit."""
    assert ROUTE_CACHE_ENTRIES >= 1 << 20
    for _ in range(4):
        bus.subscribe("*:*", nothing)
    cache = bus.index.cache
    cache.entry_limit = 10  # two routes of 4 entries fit, not three
    for name in ("a:run", "b:run", "c:run"):
        bus.twitter(name)
    assert cached(bus, "a:run") is None
    assert all(cached(bus, n) is not None for n in ("b:run", "c:run"))
    assert cache.entries == 8
    bus.subscribe("b:*", other)  # b:run's route is forgotten, and its entries with it
    assert cache.entries == 4
    cache.clear()
    assert cache.entries == 0


def test_a_route_longer_than_the_entry_bound_is_delivered_and_not_cached(bus: Bus) -> None:
    got: list[Message] = []
    bus.subscribe("*:*", got.append, weak=False)
    for _ in range(3):
        bus.subscribe("*:*", nothing)
    bus.index.cache.entry_limit = 3  # a route of 4 entries cannot be kept
    bus.twitter("a:run")
    bus.twitter("a:run")  # worked out again
    assert [str(m.identifier) for m in got] == ["a:run", "a:run"]
    assert cached(bus, "a:run") is None
    assert bus.index.cache.entries == 0
