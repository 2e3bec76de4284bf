"""A pytest plugin (entry point ``pytest11``) with fixtures for code that uses berryMQ.

- ``berrymq_bus``: a fresh :class:`~berrymq.Bus` that is the default bus for the test,
  raising receivers' errors from ``twitter`` (``raise_errors=True``), closed afterwards.
  Plugins are loaded as if no settings file existed, so the test is not affected by a
  ``berrymq.toml`` in the working directory.
- ``berrymq_plugin_host``: that plugin host, to create more isolated buses.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from berrymq.bus import Bus
from berrymq.default import use_bus
from berrymq.plugins import PluginHost
from berrymq.settings import Settings

__all__ = ["berrymq_bus", "berrymq_plugin_host"]

_host: PluginHost | None = None


@pytest.fixture
def berrymq_plugin_host() -> PluginHost:
    """Every installed plugin, active, with no settings file (loaded once per session)."""
    global _host
    if _host is None:
        _host = PluginHost(Settings())
    return _host


@pytest.fixture
def berrymq_bus(berrymq_plugin_host: PluginHost) -> Iterator[Bus]:
    """An isolated bus, made the default bus for the duration of the test."""
    bus = Bus(raise_errors=True, plugins=berrymq_plugin_host, name="test")
    with use_bus(bus):
        yield bus
    bus.close()
