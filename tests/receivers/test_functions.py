"""berrymq.receivers.functions (SPEC 3): functions, static and class methods as receivers,
with guards, weak references and clear errors, on an isolated default bus."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest

import berrymq
from berrymq import (
    Bus,
    Message,
    following_function,
    regist_function,
    regist_method,
    twitter,
)


def test_function_receiver_gets_matching_messages_in_the_senders_thread(berrymq_bus: Bus) -> None:
    got: list[tuple[str, Any, str]] = []

    def receive_log(message: Message) -> None:
        got.append((message.id, message.args[0], threading.current_thread().name))

    assert following_function("*:log")(receive_log) is receive_log  # returned unchanged
    twitter("do_something:log", "started")
    twitter("do_something:other", "ignored")
    assert got == [("do_something:log", "started", threading.current_thread().name)]


def test_registration_order(berrymq_bus: Bus) -> None:
    order: list[str] = []
    patterns = ["*:*", "job:*", "job:run", "*:run", "*", "other:run", "job", "job:stop"]

    def recorder(pattern: str) -> Callable[[Message], None]:
        return lambda message: order.append(pattern)

    for pattern in patterns:
        regist_function(pattern, recorder(pattern), weak=False)
    twitter("job:run")
    assert order == ["*:*", "job:*", "job:run", "*:run", "*", "job"]
    order.clear()
    twitter("*:stop")  # a wildcard sender reaches every receiver whose action matches
    assert order == ["*:*", "job:*", "*", "job", "job:stop"]


def test_guard_condition(berrymq_bus: Bus) -> None:
    got: list[Any] = []

    @following_function("n:*", guard_condition=lambda m: m.args[0] % 2 == 0)
    def even(message: Message) -> None:
        got.append(message.args[0])

    # at run time, the guard condition as the third positional argument
    regist_function("n:*", lambda m: got.append(("rt", m.args[0])), lambda m: m.args[0] > 2, weak=False)
    guarded: list[Message] = []
    regist_function("n:*", guarded.append, guard_condition=guarded.append, weak=False)
    for n in range(5):
        twitter("n:x", n)
    assert got == [0, 2, ("rt", 3), 4, ("rt", 4)]
    # the last guard was called with each message and returned None: its receiver never ran
    assert [m.args[0] for m in guarded] == [0, 1, 2, 3, 4]


def test_staticmethod_and_classmethod(berrymq_bus: Bus) -> None:
    got: list[Any] = []

    class Handlers:
        @following_function("s:*")
        @staticmethod
        def static(message: Message) -> None:
            got.append(("static", message.id))

        @staticmethod
        @following_function("under:*")
        def static_under(message: Message) -> None:
            got.append(("static under", message.id))

        @following_function("c:*")
        @classmethod
        def klass(cls, message: Message) -> None:
            got.append(("class", cls, message.id))

    for ident in ("s:x", "under:x", "c:x"):
        twitter(ident)
    assert got == [("static", "s:x"), ("static under", "under:x"), ("class", Handlers, "c:x")]
    assert isinstance(Handlers.__dict__["klass"], classmethod)
    # still ordinary methods
    Handlers.static(Message("x:y"))
    Handlers.klass(Message("x:y"))
    assert got[-2:] == [("static", "x:y"), ("class", Handlers, "x:y")]


def test_weak_function_collected_stops_receiving(berrymq_bus: Bus) -> None:
    got: list[str] = []

    def make() -> Any:
        def receiver(message: Message) -> None:
            got.append(f"function {message.id}")

        return receiver

    class Obj:
        def method(self, message: Message) -> None:
            got.append(f"method {message.id}")

    receiver = make()
    obj = Obj()
    regist_function("w:*", receiver)
    regist_method("w:*", obj.method)  # weak too: the bound method does not keep obj alive
    twitter("w:1")
    del receiver, obj
    gc.collect()
    twitter("w:2")
    assert got == ["function w:1", "method w:1"]
    assert all(s.pattern != berrymq.Identifier("w:*") for s in berrymq_bus.subscriptions())


def test_lambda_needs_weak_false(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("l:*", lambda m: got.append("weak"))  # collected at once
    regist_function("l:*", lambda m: got.append("strong"), weak=False)

    class Obj:
        def method(self, message: Message) -> None:
            got.append("method")

    regist_method("l:*", Obj().method, weak=False)  # held strongly, and its object with it

    def make() -> None:
        @following_function("l:*", weak=False)
        def inner(message: Message) -> None:
            got.append("inner")

    make()
    gc.collect()
    twitter("l:x")
    assert got == ["strong", "method", "inner"]


def test_receiver_errors_on_non_callables(berrymq_bus: Bus) -> None:
    with pytest.raises(TypeError, match="callable"):
        regist_function("a:b", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="guard_condition"):
        regist_function("a:b", lambda m: None, 42, weak=False)  # type: ignore[arg-type]

    class NoWeakRef:
        __slots__ = ()

        def __call__(self, message: Message) -> None:
            pass

    with pytest.raises(TypeError, match="weak=False"):
        regist_function("a:b", NoWeakRef())
    regist_function("a:b", NoWeakRef(), weak=False)
    twitter("a:b")


def test_following_function_on_methods_in_a_class_body_is_a_clear_error(berrymq_bus: Bus) -> None:
    with pytest.raises(TypeError, match="write @following_function above @classmethod"):
        class Wrong:
            @classmethod
            @following_function("w:*")
            def on(cls, message: Message) -> None:
                pass

    with pytest.raises(TypeError, match="Follower class with @following"):
        class AlsoWrong:
            @following_function("w:*")
            def on(self, message: Message) -> None:
                pass

    def make() -> Any:  # a nested function whose first parameter is called self is fine
        @following_function("w:*", weak=False)
        def receiver(self: Message, extra: int = 0) -> None:
            pass

        return receiver

    assert make()
