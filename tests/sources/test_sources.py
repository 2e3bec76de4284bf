"""berrymq.sources: the Adapter base of sources, and sources registered by plugins
(``berrymq_register_sources``)."""

from __future__ import annotations

import importlib
import sys
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


def test_a_missing_adapter_plugin_is_not_said_to_be_berrymqs() -> None:
    """The hint named berryMQ's own distribution (pip install . in a berryMQ checkout)
    for any source, a user's adapter too."""
    host = PluginHost(Settings(), entry_points=False)
    with Bus(plugins=host) as bus, pytest.raises(berrymq.PluginNotAvailable) as info:
        Countdown(1, bus=bus)
    assert info.value.plugin == "countdown"
    assert "berryMQ checkout" not in str(info.value)
    assert "no installed distribution declares it (an entry point 'countdown' of the group " \
        "'berrymq')" in str(info.value)


ACME = """
from berrymq.identifier import parse
from berrymq.sources import Adapter

class Beacon(Adapter):
    kind = "beacon"

    def __init__(self, interval, *, bus=None):
        super().__init__(interval, bus=bus)
        self._start()

    def poll(self):
        self.bus.twitter("beacon:tick")

    def sends(self):
        return [parse("beacon:tick")]
"""


def test_a_missing_adapter_plugin_names_the_adapters_distribution(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter's class comes from an installed distribution (acme-beacons) that does
    not declare the plugin: the hint says to install the plugin from it."""
    info = tmp_path / "acme_beacons-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-beacons\nVersion: 0.1\n")
    (info / "top_level.txt").write_text("acme_beacons\n")
    (tmp_path / "acme_beacons.py").write_text(ACME)
    monkeypatch.syspath_prepend(str(tmp_path))
    beacons = importlib.import_module("acme_beacons")
    monkeypatch.setitem(sys.modules, "acme_beacons", beacons)  # taken out again after
    host = PluginHost(Settings(), entry_points=False)
    with Bus(plugins=host) as bus, pytest.raises(berrymq.PluginNotAvailable) as caught:
        beacons.Beacon(1, bus=bus)
    assert str(caught.value).endswith(
        "install the plugin 'beacon' of acme-beacons (pip install acme-beacons, a version that "
        "declares it: the entry point 'beacon' of the group 'berrymq')")


class Bare(Adapter):
    """An adapter that implements nothing."""

    kind = "timer"

    def __init__(self, interval: float, *, bus: Bus | None = None) -> None:
        super().__init__(interval, bus=bus)
        self._start()


class PollOnly(Bare):
    def poll(self) -> None:
        pass


def test_an_adapter_that_implements_too_little_is_refused_naming_what(berrymq_bus: Bus) -> None:
    """It started, then its thread logged a bare NotImplementedError every interval, and
    the network picture raised one."""
    with pytest.raises(TypeError) as bare:
        Bare(0.01)
    assert str(bare.value) == (
        "Bare is an Adapter that does not implement poll() (one round of work, called every "
        "interval in the adapter's thread) nor sends() (the identifiers it sends, for the "
        "network picture)")
    with pytest.raises(TypeError, match=r"^PollOnly is an Adapter that does not implement "
                                        r"sends\(\) \(the identifiers"):
        PollOnly(0.01)
    assert running_adapters(berrymq_bus) == []
