"""berrymq.subscription: the handle a registration returns."""

from __future__ import annotations

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
