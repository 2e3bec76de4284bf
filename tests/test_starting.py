"""berrymq._starting: a bus's start (its settings applied, its plugins joined), and what a
start that failed leaves."""

from __future__ import annotations

import socket

import pytest

from berrymq import Bus, PluginError
from berrymq.hookspecs import hookimpl
from berrymq.plugins import PluginHost
from berrymq.settings import Settings


def test_started_says_whether_start_was_called() -> None:
    bus = Bus(start=False)
    assert not bus.started
    bus.start()
    assert bus.started
    bus.close()


class _FailingStart:
    """A plugin whose start hook raises (its file cannot be opened, say)."""

    calls = 0

    @hookimpl
    def berrymq_start_bus(self, bus: Bus) -> None:
        self.calls += 1
        raise FileNotFoundError("nodir/m.jsonl")


def test_a_bus_whose_start_failed_is_not_started_and_says_so_on_every_later_start() -> None:
    """Start used to mark the bus started even when a plugin's hook raised: the later
    uses went on without that plugin, and nothing said so."""
    plugin = _FailingStart()
    bus = Bus(start=False, plugins=PluginHost(Settings(), extra_plugins=[("fails", plugin)]))
    with pytest.raises(PluginError, match="raised FileNotFoundError in its hook "
                                          "berrymq_start_bus: nodir") as failed:
        bus.start()
    assert isinstance(failed.value.__cause__, FileNotFoundError)
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"^bus '.*' did not start: its start raised "
                                               r"PluginError: plugin 'fails' .*nodir/m.jsonl"
                           ) as info:
            bus.start()
        assert info.value.__cause__ is failed.value
    assert not bus.started and plugin.calls == 1  # not tried again
    bus.close()


class _HoldsAPort:
    """A plugin that listens on a port while a bus is started (as a transport's server)."""

    def __init__(self) -> None:
        self.server: socket.socket | None = None

    @hookimpl
    def berrymq_start_bus(self, bus: Bus) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))

    @hookimpl
    def berrymq_close_bus(self, bus: Bus) -> None:
        if self.server is not None:
            self.server.close()


def test_a_failed_start_lets_go_of_what_the_plugins_that_joined_hold() -> None:
    """Bus() whose start fails is never handed to its caller: a port a plugin had opened
    before another plugin failed stayed open for the rest of the process."""
    holder = _HoldsAPort()
    # pluggy calls the plugin registered last first: the holder starts, then one fails
    host = PluginHost(Settings(), extra_plugins=[("fails", _FailingStart()), ("holds", holder)])
    with pytest.raises(PluginError, match="nodir"):
        Bus(plugins=host)
    assert holder.server is not None and holder.server.fileno() == -1  # closed
