"""SPEC 8: a plugin whose per-bus hook raises is named (berrymq._hook_calls): the error says
which plugin, which distribution and which hook, and how to switch the plugin off."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from berrymq import Bus, Message, PluginError
from berrymq.hookspecs import hookimpl
from berrymq.plugins import PluginHost
from berrymq.settings import Settings
from berrymq.transports.base import Transport


class _Raises:
    """A plugin whose per-bus hooks raise, each where the test asks."""

    def __init__(self, *failing: str) -> None:
        self.failing = failing
        self.closed = 0

    def _maybe_raise(self, hook: str) -> None:
        if hook in self.failing:
            raise RuntimeError(f"boom in {hook}")

    @hookimpl
    def berrymq_start_bus(self, bus: Bus) -> None:
        self._maybe_raise("start")

    @hookimpl
    def berrymq_close_bus(self, bus: Bus) -> None:
        self.closed += 1
        self._maybe_raise("close")

    @hookimpl
    def berrymq_observe_message(self, bus: Bus, message: Message) -> None:
        self._maybe_raise("observe")

    @hookimpl
    def berrymq_report_status(self, bus: Bus, report: Any) -> None:
        self._maybe_raise("status")
        report.add("fine" if not self.failing else "faulty", "ok")


def _hosting(**plugins: _Raises) -> PluginHost:
    return PluginHost(Settings(), entry_points=False, extra_plugins=list(plugins.items()))


def _names_plugin_and_hook(error: PluginError, plugin: str, hook: str) -> None:
    assert (error.plugin, error.hook) == (plugin, hook)
    assert str(error).startswith(
        f"plugin {plugin!r} (registered in code) raised RuntimeError in its hook {hook}: ")
    assert str(error).endswith(f"disable it in the settings file (disable = [{plugin!r}]) "
                               f"or set BERRYMQ_BLOCK_PLUGINS={plugin}")


def test_a_start_hook_that_raises_fails_the_start_with_an_error_naming_plugin_and_hook() -> None:
    faulty = _Raises("start")
    with pytest.raises(PluginError) as info:
        Bus(plugins=_hosting(faulty=faulty))
    _names_plugin_and_hook(info.value, "faulty", "berrymq_start_bus")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert faulty.closed == 1  # the failed start closed the bus


def test_a_close_hook_that_raises_is_logged_and_the_close_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    faulty, fine = _Raises("close"), _Raises()
    bus = Bus(plugins=_hosting(faulty=faulty, fine=fine))
    with caplog.at_level(logging.ERROR, logger="berrymq"):
        bus.close()
    assert bus.closed and faulty.closed == fine.closed == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"bus {bus.name}: plugin 'faulty' (registered in code) raised RuntimeError in its "
        "hook berrymq_close_bus: boom in close; uninstall it, disable it in the settings "
        "file (disable = ['faulty']) or set BERRYMQ_BLOCK_PLUGINS=faulty"]


def test_a_status_hook_that_raises_is_that_plugins_error_line() -> None:
    host = _hosting(faulty=_Raises("status"), fine=_Raises())
    with Bus(plugins=host) as bus:
        lines = host.status(bus).lines
    assert lines["fine"] == ["ok"]
    assert lines["faulty"] == [
        "error: plugin 'faulty' (registered in code) raised RuntimeError in its hook "
        "berrymq_report_status: boom in status; uninstall it, disable it in the settings "
        "file (disable = ['faulty']) or set BERRYMQ_BLOCK_PLUGINS=faulty"]


@pytest.mark.parametrize("order", [("faulty", "fine"), ("fine", "faulty")])
def test_an_observe_hook_that_raises_is_an_error_naming_the_plugin_that_did(
        order: tuple[str, str]) -> None:
    plugins = {"faulty": _Raises("observe"), "fine": _Raises()}
    with Bus(plugins=_hosting(**{name: plugins[name] for name in order})) as bus:
        with pytest.raises(PluginError) as info:
            bus.twitter("x:y")
    _names_plugin_and_hook(info.value, "faulty", "berrymq_observe_message")


class _StatusRaises(Transport):
    def listen(self, address: str) -> str:
        raise TypeError("not served")

    def interconnect(self, address: str, ttl: float) -> Any:
        raise TypeError("not served")

    connect_oneway = interconnect

    def connect_via_queue(self, address: str, pattern: str, ttl: float) -> Any:
        raise TypeError("not served")

    def status(self) -> str:
        raise OSError("status broke")

    def close(self) -> None:
        pass


class _BadNet:
    @hookimpl
    def berrymq_register_transports(self, registry: Any) -> None:
        registry.add("bad", _StatusRaises)


def test_a_transport_whose_status_raises_is_its_plugins_error_line_and_the_others_report() -> None:
    """Its exception went through status(): every plugin's line was lost (/status showed
    none, the error nowhere)."""
    host = PluginHost(Settings(), entry_points=False,
                      extra_plugins=[("badnet", _BadNet()), ("fine", _Raises())])
    with Bus(plugins=host) as bus:
        bus.transport("bad")
        local = bus.transport("local").status()
        lines = host.status(bus).lines
    assert lines["fine"] == ["ok"] and lines["local"] == [f"local: {local}"]
    assert lines["badnet"] == [
        "error: plugin 'badnet' (registered in code) raised OSError in status() of its "
        "transport for bad://: status broke; uninstall it, disable it in the settings file "
        "(disable = ['badnet']) or set BERRYMQ_BLOCK_PLUGINS=badnet"]


def _wrapping(option: str) -> list[tuple[str, object]]:
    """A plugin per kind of hook (registry, bus, per message) that wraps it with ``option``."""
    mark = hookimpl(**{option: True})

    class Registry:
        @mark
        def berrymq_register_transports(self, registry: Any) -> Any:
            raise AssertionError("called")
            yield

    class Start:
        @mark
        def berrymq_start_bus(self, bus: Bus) -> Any:
            raise AssertionError("called")
            yield

    class Observe:
        @mark
        def berrymq_observe_message(self, bus: Bus, message: Message) -> Any:
            raise AssertionError("called")
            yield

    return [("berrymq_register_transports", Registry()), ("berrymq_start_bus", Start()),
            ("berrymq_observe_message", Observe())]


@pytest.mark.parametrize("option", ["wrapper", "hookwrapper"])
def test_a_hook_wrapper_is_refused_naming_plugin_and_hook(option: str) -> None:
    """Each plugin's hooks are called on their own, so a wrapper wrapped nothing: it was
    accepted and silently did nothing."""
    for hook, plugin in _wrapping(option):
        with pytest.raises(PluginError) as info:
            PluginHost(Settings(), entry_points=False, extra_plugins=[("wraps", plugin)])
        assert (info.value.plugin, info.value.hook) == ("wraps", hook)
        assert str(info.value).startswith(
            f"plugin 'wraps' (registered in code) marks its hook {hook} with {option}=True; "
            "berryMQ calls each plugin's hooks on their own, so a wrapper would wrap no "
            "other plugin's: order it with tryfirst=True or trylast=True instead; uninstall it")
