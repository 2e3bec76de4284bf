"""berrymq._hook_checks: what a plugin is checked for beyond pluggy's own checks, each
found on a plugin manager as berryMQ makes one (its hook specs added)."""

from __future__ import annotations

import types

import pluggy
import pytest

import berrymq.hookspecs
from berrymq._hook_checks import hook_wrapper, misspelled_hook, unmarked_function
from berrymq.hookspecs import hookimpl


def manager(**plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(berrymq.hookspecs.PROJECT_NAME)
    pm.add_hookspecs(berrymq.hookspecs)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


def plugin(**functions: object) -> types.ModuleType:
    """A plugin module with ``functions`` in it."""
    module = types.ModuleType("a_plugin")
    for name, function in functions.items():
        setattr(module, name, function)
    return module


def test_a_well_formed_plugin_passes_every_check() -> None:
    @hookimpl
    def berrymq_start_bus(bus: object) -> None:
        pass

    good = plugin(berrymq_start_bus=berrymq_start_bus, helper=print)
    pm = manager(good=good)
    assert unmarked_function(pm, good) is None
    assert misspelled_hook(pm) is None
    assert hook_wrapper(pm) is None


@pytest.mark.parametrize(("project", "said"), [
    (None, "berrymq_start_bus that is not marked with @hookimpl"),
    ("pytest", "marked for the hooks of 'pytest'"),
])
def test_a_hook_function_not_marked_for_berrymq_is_found(project: str | None,
                                                          said: str) -> None:
    def berrymq_start_bus(bus: object) -> None:
        pass

    function = berrymq_start_bus if project is None else pluggy.HookimplMarker(project)(
        berrymq_start_bus)
    unmarked = plugin(berrymq_start_bus=function)
    found = unmarked_function(manager(unmarked=unmarked), unmarked)
    assert found is not None and said in found


def test_a_misspelled_hook_is_named_with_the_plugin() -> None:
    @hookimpl
    def berrymq_register_transport(registry: object) -> None:
        pass

    problem = misspelled_hook(manager(typo=plugin(berrymq_register_transport=berrymq_register_transport)))
    assert problem is not None and problem.plugin == "typo"
    assert "berrymq_register_transport" in problem.text
    assert "berrymq_register_transports" in problem.text  # the hooks there are, listed


def test_a_former_hook_name_says_its_new_name() -> None:
    @hookimpl
    def berrymq_bus_started(bus: object) -> None:
        pass

    problem = misspelled_hook(manager(old=plugin(berrymq_bus_started=berrymq_bus_started)))
    assert problem is not None and "berrymq_bus_started is now berrymq_start_bus" in problem.text


def test_a_hook_wrapper_is_found_with_its_hook() -> None:
    @hookimpl(wrapper=True)
    def berrymq_start_bus(bus: object) -> object:
        return (yield)

    problem = hook_wrapper(manager(wrapping=plugin(berrymq_start_bus=berrymq_start_bus)))
    assert problem is not None
    assert (problem.plugin, problem.hook) == ("wrapping", "berrymq_start_bus")
    assert "wrapper=True" in problem.text
