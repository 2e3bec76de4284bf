"""berrymq.subscription: the handle a registration returns."""

from __future__ import annotations

import gc
from collections import deque

import pytest

from berrymq import (
    Bus,
    Message,
    regist_function,
    twitter,
)


def test_subscription_as_context_manager(berrymq_bus: Bus) -> None:
    got: list[str] = []
    with regist_function("ctx:*", lambda m: got.append(m.id), weak=False):
        twitter("ctx:in")
    twitter("ctx:out")
    assert got == ["ctx:in"]


def test_a_kind_says_whether_it_refuses_and_one_that_does_not_say_may(berrymq_bus: Bus) -> None:
    class Bounded:  # a receiver kind that says it
        name, answers, refuses = "bounded", False, True

    class Lenient:
        name, answers, refuses = "lenient", True, False

    class Old:  # written before ReceiverKind.refuses existed
        name, answers = "old", True

    def nothing(message: Message) -> None:
        pass

    subscribe = berrymq_bus.subscribe
    assert subscribe("k:a", nothing, weak=False, kind=Bounded()).refuses
    assert not subscribe("k:b", nothing, weak=False, kind=Lenient()).refuses
    assert subscribe("k:c", nothing, weak=False, kind=Old()).refuses  # type: ignore[arg-type]
    assert not subscribe("k:d", nothing, weak=False).refuses  # a function



def test_a_builtin_method_is_held_through_its_object(berrymq_bus: Bus) -> None:
    results: deque[Message] = deque()
    subscription = regist_function("job:*", results.append)  # weak, by default
    twitter("job:one")
    assert [m.id for m in results] == ["job:one"]  # was dropped at once, with no error
    assert subscription.active
    del results
    gc.collect()
    assert not subscription.active  # gone with its object
    twitter("job:two")


def test_unfollow_finds_a_builtin_method_by_itself_and_by_its_object(berrymq_bus: Bus) -> None:
    results: deque[Message] = deque()
    first = regist_function("job:*", results.append)
    assert berrymq_bus.unfollow(results.append) == 1 and not first.active
    second = regist_function("job:*", results.append)
    assert berrymq_bus.unfollow(results) == 1 and not second.active
    twitter("job:none")
    assert not results


class _Slotted:
    __slots__ = ("got",)

    def take(self, message: Message) -> None:
        self.got = message


def test_a_method_whose_object_takes_no_weak_reference_is_refused(berrymq_bus: Bus) -> None:
    results: list[Message] = []
    with pytest.raises(TypeError, match=r"'list' object takes none\); register it with weak=False"):
        regist_function("job:*", results.append)
    with pytest.raises(TypeError, match=r"'_Slotted' object takes none\); register it with weak=False"):
        regist_function("job:*", _Slotted().take)
    with regist_function("job:*", results.append, weak=False):
        twitter("job:kept")
    assert [m.id for m in results] == ["job:kept"]
