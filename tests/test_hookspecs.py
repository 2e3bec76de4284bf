"""berrymq.hookspecs: every hook is ``berrymq_`` and a verb, typed, and says when it is
called."""

from __future__ import annotations

import inspect
import typing

import pytest
from helpers import hook_names

from berrymq import hookspecs, registries
from berrymq._hook_checks import RENAMED_HOOKS
from berrymq.bus import Bus
from berrymq.cli import Commands
from berrymq.message import Message

#: the verbs hook names start with (after ``berrymq_``)
VERBS = ("declare", "register", "start", "close", "observe", "report")


def test_the_hooks_are_found_and_exported() -> None:
    found = hook_names()
    assert "berrymq_register_transports" in found
    assert set(found) <= set(hookspecs.__all__), "a hook missing from hookspecs.__all__"


@pytest.mark.parametrize("hook", hook_names())
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


@pytest.mark.parametrize(("former", "new"), sorted(RENAMED_HOOKS.items()))
def test_a_former_name_is_gone_and_its_successor_is_a_hook(former: str, new: str) -> None:
    assert not hasattr(hookspecs, former)
    assert new in hook_names()
