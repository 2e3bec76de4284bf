"""berrymq.registries: the typed registries the registry hooks fill, each name claimed by
one plugin."""

from __future__ import annotations

from typing import Any

import pytest

from berrymq.errors import SettingsError
from berrymq.registries import (
    Kind,
    ReceiverRegistry,
    SettingsSchema,
    SourceRegistry,
    StatusReport,
    TransportRegistry,
)


def factory(bus: Any, settings: Any) -> Any:
    return None


def test_a_scheme_is_found_in_any_case_and_names_its_plugin() -> None:
    registry = TransportRegistry()
    registry.add("TCP", factory, plugin="jsonrpc-tcp")
    assert "tcp" in registry and registry.factory("tcp") is factory
    assert registry.plugin_for("tcp") == "jsonrpc-tcp" and registry.names() == ["tcp"]
    assert registry.factory("http") is None and registry.plugin_for("http") is None


def test_a_plugin_may_register_its_own_name_again() -> None:
    registry = SourceRegistry()
    registry.add("timer", int, plugin="core")
    registry.add("timer", float, plugin="core")  # e.g. loaded twice: the last one counts
    assert registry.get("timer") is float


@pytest.mark.parametrize("registry", [TransportRegistry(), ReceiverRegistry(), SourceRegistry()],
                         ids=lambda r: type(r).__name__)
def test_a_name_claimed_by_two_plugins_is_an_error_naming_both(registry: Any) -> None:
    value = factory if isinstance(registry, TransportRegistry) else Kind("x")
    registry.add("shared", value, plugin="first")
    with pytest.raises(SettingsError, match=r"'shared' is claimed by both plugin 'first' and "
                                         r"plugin 'second'; disable one of them"):
        registry.add("shared", value, plugin="second")
    assert registry.plugin_for("shared") == "first"


@pytest.mark.parametrize("name", ["", None, 3])
def test_an_empty_or_non_text_name_is_refused_naming_the_plugin(name: Any) -> None:
    with pytest.raises(ValueError, match="plugin 'odd' registered an empty or non-str URL scheme"):
        TransportRegistry().add(name, factory, plugin="odd")
    with pytest.raises(ValueError, match="plugin 'odd' registered an empty or non-str receiver kind"):
        ReceiverRegistry().add(name, Kind("x"), plugin="odd")


def test_a_name_is_the_callers_and_plugin_is_needed_only_outside_a_hook() -> None:
    registry = TransportRegistry()
    with pytest.raises(ValueError, match="'tcp' is registered outside a registry hook: give plugin="):
        registry.add("tcp", factory)
    registry.caller = "mine"  # as the plugin host sets it for each plugin's turn
    registry.add("mine", factory)
    registry.add("also", factory, plugin="mine")
    with pytest.raises(ValueError, match=r"registers the URL scheme 'tcp' with "
                                         r"plugin='jsonrpc-tcp', another plugin's name"):
        registry.add("tcp", factory, plugin="jsonrpc-tcp")
    registry.caller, registry.closed = None, True
    with pytest.raises(ValueError, match="'late' is registered after the plugins loaded"):
        registry.add("late", factory, plugin="mine")
    assert registry.names() == ["also", "mine"] and registry.plugin_for("mine") == "mine"


def test_receiver_kinds_are_kept_as_given() -> None:
    registry = ReceiverRegistry()
    queues = Kind("queue", answers=False)
    registry.add("queues", queues, plugin="core")
    assert registry.get("queues") is queues and registry.get("nothing") is None


def test_settings_schema_and_status_report_collect_per_plugin() -> None:
    schema = SettingsSchema()
    schema.add("jsonrpc-tcp", host=str, port=int)
    schema.add("jsonrpc-tcp", timeout=(int, float))
    assert schema.tables == {"jsonrpc-tcp": {"host": str, "port": int, "timeout": (int, float)}}
    report = StatusReport()
    report.add("nats", "connected")
    report.add("nats", "0 buffered")
    assert report.lines == {"nats": ["connected", "0 buffered"]}
