"""berrymq.api (SPEC 3): the module-level helpers beyond registering, ``talk`` and
``unfollow``, on an isolated default bus (the decorators that send: test_decorators)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import WAIT, take_all

from berrymq import (
    Bus,
    Follower,
    Message,
    Queue,
    following,
    following_function,
    regist_function,
    set_multiplicity,
    talk,
    twitter,
    unfollow,
)
from berrymq.subscription import Kind


def test_unfollow_function_object_and_class(berrymq_bus: Bus) -> None:
    got: list[str] = []

    @following_function("u:*")
    def fn(message: Message) -> None:
        got.append("fn")

    regist_function("u:x", fn)  # the same function, a second time

    class Obj(metaclass=Follower):
        @following("u:*")
        def a(self, message: Message) -> None:
            got.append("a")

        @following("u:x")
        def b(self, message: Message) -> None:
            got.append("b")

    one, two, three = Obj(), Obj(), Obj()
    twitter("u:x")
    assert got == ["fn", "fn", "a", "b", "a", "b", "a", "b"]
    assert unfollow(fn) == 2  # every registration of the function
    assert unfollow(one) == 2  # every receiver of the object
    got.clear()
    twitter("u:x")
    assert got == ["a", "b", "a", "b"]
    assert unfollow(two.a) == 1  # one method of one object
    got.clear()
    twitter("u:x")
    assert got == ["b", "a", "b"]
    assert unfollow(Obj) == 3  # every receiver of every object of the class
    got.clear()
    twitter("u:x")
    assert got == []
    assert unfollow(fn) == 0
    four = Obj()
    assert unfollow(four.a) == 1  # a bound method, made anew by the attribute access
    assert unfollow(four.a) == 0
    del one, two, three, four


def test_talk_sends_return_values_to_callback(berrymq_bus: Bus) -> None:
    results: list[Any] = []

    @following_function("*:process")
    def do_process(message: Message) -> str:
        return f"done {message.args[0]}"

    @following_function("*:process")
    def silent(message: Message) -> None:
        return None

    @following_function("*:process")
    def zero(message: Message) -> int:
        return 0  # falsy but not None: sent

    @following_function("*:log_result")
    def receive_result(message: Message) -> None:
        results.append((message.id, message.args[0]))

    talk("test:process", "test:log_result", "x")
    assert results == [("test:log_result", "done x"), ("test:log_result", 0)]


@pytest.mark.parametrize("workers", [0, 2])
def test_talk_sends_no_return_value_of_a_kind_that_does_not_answer(
        berrymq_bus: Bus, workers: int) -> None:
    """A receiver kind with ``answers=False`` (a store, as queues are) gives no replies
    to ``ask``, nor to ``talk``: talk sent what such a receiver returned as a reply."""
    replies = Queue("told:*")
    stored: list[Message] = []

    def store(message: Message) -> int:
        stored.append(message)
        return len(stored)  # its own bookkeeping, not an answer

    berrymq_bus.subscribe("tell:*", store, weak=False, kind=Kind("store", answers=False))
    berrymq_bus.subscribe("tell:*", lambda m: "answered", weak=False)
    set_multiplicity(workers)
    talk("tell:x", "told:back")
    assert berrymq_bus.join(WAIT)
    assert [m.args for m in take_all(replies)] == [("answered",)]
    assert [m.id for m in stored] == ["tell:x"]
    assert berrymq_bus.ask("tell:y") == ["answered"]  # as ask has it


