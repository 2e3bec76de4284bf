"""berrymq.hookspecs: every hook is ``berrymq_`` and a verb, typed, and says when it is
called; the former names are kept beside the new ones, each pointing at its successor."""

from __future__ import annotations

import inspect
import typing

import pytest
from helpers import hook_names

from berrymq import hookspecs, registries
from berrymq.bus import Bus
from berrymq.cli import Commands
from berrymq.message import Message

#: the verbs hook names start with (after ``berrymq_``)
VERBS = ("declare", "register", "start", "close", "observe", "report")
#: former names, still called for plugins not yet renamed, and the hook each stands for
FORMER = {"berrymq_bus_started": "berrymq_start_bus", "berrymq_bus_closing": "berrymq_close_bus",
          "berrymq_message_sent": "berrymq_observe_message"}


def test_the_hooks_are_found_and_exported() -> None:
    found = hook_names()
    assert "berrymq_register_transports" in found
    assert set(found) <= set(hookspecs.__all__), "a hook missing from hookspecs.__all__"


@pytest.mark.parametrize("hook", sorted(set(hook_names()) - set(FORMER)))
def test_a_hook_name_is_berrymq_and_a_verb(hook: str) -> None:
    assert hook.startswith("berrymq_") and hook.split("_")[1] in VERBS, hook


@pytest.mark.parametrize("hook", hook_names())
def test_a_hook_is_typed_and_says_when_it_is_called(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    # the names hookspecs imports only for type checkers, to resolve its annotations
    names = {**vars(registries), "Bus": Bus, "Commands": Commands, "Message": Message}
    hints = typing.get_type_hints(spec, vars(hookspecs) | names)
    params = inspect.signature(spec).parameters
    assert set(params) <= set(hints) and hints["return"] is type(None), hook
    assert "Called" in (spec.__doc__ or ""), f"{hook}: the docstring must say when it is called"


@pytest.mark.parametrize(("former", "hook"), sorted(FORMER.items()))
def test_a_former_name_takes_the_same_arguments_as_its_successor(former: str, hook: str) -> None:
    old, new = getattr(hookspecs, former), getattr(hookspecs, hook)
    assert inspect.signature(old) == inspect.signature(new)
    assert hook in (old.__doc__ or "")

