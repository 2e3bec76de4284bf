"""berrymq.sources: the Adapter base of sources, and sources registered by plugins
(``berrymq_register_sources``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT

import berrymq
from berrymq import Bus, FileObserver, IntervalTimer
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier, parse
from berrymq.plugins import PluginHost
from berrymq.registries import SourceRegistry
from berrymq.settings import Settings
from berrymq.sources import Adapter, running_adapters


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
