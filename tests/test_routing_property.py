"""The route index and cache agree with Identifier.matches, whatever the mix of patterns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from berrymq import Bus, Identifier
from berrymq.plugins import PluginHost
from berrymq.settings import Settings

_HOST = PluginHost(Settings())

part = st.sampled_from(["*", "a", "b", "c"])
namespace = st.sampled_from(["", "@x", "@y"])
identifier = st.builds(lambda n, ns, a: f"{n}{ns}:{a}", part, namespace, part)


@settings(max_examples=150, deadline=None)
@given(patterns=st.lists(identifier, max_size=25), probes=st.lists(identifier, min_size=1, max_size=10),
       cancel=st.lists(st.integers(min_value=0, max_value=24), max_size=5))
def test_route_equals_brute_force(patterns: list[str], probes: list[str], cancel: list[int]) -> None:
    bus = Bus(plugins=_HOST)
    subscriptions = [bus.subscribe(p, print, weak=False) for p in patterns]
    for probe in probes:  # warm the cache, then change subscriptions: it must be rebuilt
        bus.route(probe)
    for index in cancel:
        if index < len(subscriptions):
            subscriptions[index].cancel()
    alive = [s for s in subscriptions if s.active]
    for probe in probes:
        expected = [s for s in alive if s.pattern.matches(Identifier(probe))]
        assert list(bus.route(probe)) == expected
    bus.close()
