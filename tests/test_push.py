"""SPEC 3: the push API on an isolated default bus (the berrymq_bus fixture)."""

from __future__ import annotations

import gc
import json
import logging
from typing import Any

import pytest

import berrymq
from berrymq import (
    Bus,
    Follower,
    Message,
    auto_twitter,
    following,
    following_function,
    regist_function,
    regist_method,
    talk,
    twitter,
    twitter_exception,
)


def test_function_receiver_gets_matching_messages_in_the_senders_thread(berrymq_bus: Bus) -> None:
    import threading

    got: list[tuple[str, Any, str]] = []

    @following_function("*:log")
    def receive_log(message: Message) -> None:
        got.append((message.id, message.args[0], threading.current_thread().name))

    assert callable(receive_log) and receive_log.__name__ == "receive_log"
    twitter("do_something:log", "started")
    twitter("do_something:other", "ignored")
    assert got == [("do_something:log", "started", threading.current_thread().name)]


def test_registration_order(berrymq_bus: Bus) -> None:
    order: list[str] = []
    regist_function("*:*", lambda m: order.append("first"), weak=False)
    regist_function("job:*", lambda m: order.append("second"), weak=False)
    regist_function("job:run", lambda m: order.append("third"), weak=False)
    regist_function("*:run", lambda m: order.append("fourth"), weak=False)
    twitter("job:run")
    assert order == ["first", "second", "third", "fourth"]
    order.clear()
    twitter("*:stop")  # a wildcard sender reaches every receiver whose action matches
    assert order == ["first", "second"]


def test_wildcard_sender_reaches_every_matching_receiver(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("a:stop", lambda m: got.append("a"), weak=False)
    regist_function("b:stop", lambda m: got.append("b"), weak=False)
    regist_function("b:run", lambda m: got.append("b-run"), weak=False)
    twitter("*:stop")
    assert got == ["a", "b"]


def test_namespaces_partition_the_bus(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("*", lambda m: got.append(f"default {m.id}"), weak=False)
    regist_function("*@ops", lambda m: got.append(f"ops {m.id}"), weak=False)
    twitter("job@ops:go")
    twitter("job:go")
    assert got == ["ops job:go", "default job:go"]


def test_guard_condition(berrymq_bus: Bus) -> None:
    got: list[int] = []

    @following_function("n:*", guard_condition=lambda m: m.args[0] % 2 == 0)
    def even(message: Message) -> None:
        got.append(message.args[0])

    for n in range(5):
        twitter("n:x", n)
    assert got == [0, 2, 4]


def test_staticmethod_and_classmethod(berrymq_bus: Bus) -> None:
    got: list[str] = []

    class Handlers:
        @following_function("s:*")
        @staticmethod
        def static(message: Message) -> None:
            got.append("static")

        @following_function("c:*")
        @classmethod
        def klass(cls, message: Message) -> None:
            got.append(f"class {cls.__name__}")

    twitter("s:x")
    twitter("c:x")
    assert got == ["static", "class Handlers"]
    assert isinstance(Handlers.__dict__["klass"], classmethod)


def test_follower_instances_classmethods_and_staticmethods(berrymq_bus: Bus) -> None:
    got: list[str] = []

    class Logger(metaclass=Follower):
        def __init__(self, name: str) -> None:
            self.name = name

        @following("*:log")
        def receive_log(self, message: Message) -> None:
            got.append(f"{self.name} {message.id}")

        @following("cls:*")
        @classmethod
        def on_class(cls, message: Message) -> None:
            got.append(f"class {message.id}")

        @following("st:*")
        @staticmethod
        def on_static(message: Message) -> None:
            got.append(f"static {message.id}")

        def not_a_receiver(self, message: Message) -> None:
            got.append("never")

    first, second = Logger("first"), Logger("second")
    twitter("x:log")
    twitter("cls:go")
    twitter("st:go")
    assert got == ["first x:log", "second x:log", "class cls:go", "static st:go"]
    assert first and second


def test_follower_subclass_overrides(berrymq_bus: Bus) -> None:
    got: list[str] = []

    class Base(metaclass=Follower):
        @following("a:*")
        def on_a(self, message: Message) -> None:
            got.append("base a")

        @following("b:*")
        def on_b(self, message: Message) -> None:
            got.append("base b")

    class Child(Base):
        def on_a(self, message: Message) -> None:  # overridden without @following
            got.append("child a")

        @following("c:*")
        def on_c(self, message: Message) -> None:
            got.append("child c")

    child = Child()
    for ident in ("a:x", "b:x", "c:x"):
        twitter(ident)
    assert got == ["base b", "child c"]
    assert child


def test_regist_method_and_cancel(berrymq_bus: Bus) -> None:
    got: list[str] = []

    class Plain:
        def on(self, message: Message) -> None:
            got.append(message.id)

    obj = Plain()
    handle = regist_method("p:*", obj.on)
    twitter("p:1")
    handle.cancel()
    handle.cancel()  # idempotent
    twitter("p:2")
    assert got == ["p:1"]
    with pytest.raises(TypeError, match="bound method"):
        regist_method("p:*", lambda m: None)


def test_subscription_as_context_manager(berrymq_bus: Bus) -> None:
    got: list[str] = []
    with regist_function("ctx:*", lambda m: got.append(m.id), weak=False):
        twitter("ctx:in")
    twitter("ctx:out")
    assert got == ["ctx:in"]


def test_weak_function_collected_stops_receiving(berrymq_bus: Bus) -> None:
    got: list[str] = []

    def make() -> Any:
        def receiver(message: Message) -> None:
            got.append(message.id)

        return receiver

    receiver = make()
    regist_function("w:*", receiver)
    twitter("w:1")
    del receiver
    gc.collect()
    twitter("w:2")
    assert got == ["w:1"]
    assert all(s.pattern != berrymq.Identifier("w:*") for s in berrymq_bus.subscriptions())


def test_weak_follower_instance_collected_stops_receiving(berrymq_bus: Bus) -> None:
    got: list[str] = []

    class Listener(metaclass=Follower):
        @following("gc:*")
        def on(self, message: Message) -> None:
            got.append(message.id)

    listener = Listener()
    twitter("gc:1")
    del listener
    gc.collect()
    twitter("gc:2")
    assert got == ["gc:1"]
    assert berrymq_bus.subscriptions() == []


def test_lambda_needs_weak_false(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("l:*", lambda m: got.append("weak"))  # collected at once
    regist_function("l:*", lambda m: got.append("strong"), weak=False)
    gc.collect()
    twitter("l:x")
    assert got == ["strong"]


def test_unfollow_function_object_and_class(berrymq_bus: Bus) -> None:
    got: list[str] = []

    @following_function("u:*")
    def fn(message: Message) -> None:
        got.append("fn")

    class Obj(metaclass=Follower):
        @following("u:*")
        def on(self, message: Message) -> None:
            got.append("obj")

    one, two = Obj(), Obj()
    twitter("u:1")
    assert got == ["fn", "obj", "obj"]
    assert berrymq.unfollow(fn) == 1
    assert berrymq.unfollow(one) == 1
    got.clear()
    twitter("u:2")
    assert got == ["obj"]
    assert berrymq.unfollow(Obj) == 1
    got.clear()
    twitter("u:3")
    assert got == []
    assert two
    three = Obj()
    assert berrymq.unfollow(three.on) == 1  # a bound method, made anew by the attribute access
    assert berrymq.unfollow(three.on) == 0


def test_raising_receiver_is_isolated_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus(raise_errors=False)
    got: list[str] = []

    def bad(message: Message) -> None:
        raise RuntimeError("boom")

    bus.subscribe("e:*", bad)
    bus.subscribe("e:*", lambda m: got.append("after"), weak=False)
    with caplog.at_level(logging.ERROR, logger="berrymq"):
        bus.twitter("e:x")
    assert got == ["after"]
    assert "boom" in caplog.text and "e:x" in caplog.text
    bus.close()


def test_raise_errors_gives_exception_group_after_all_ran(berrymq_bus: Bus) -> None:
    got: list[str] = []

    def bad(message: Message) -> None:
        raise ValueError("first")

    def worse(message: Message) -> None:
        raise KeyError("second")

    regist_function("e:*", bad)
    regist_function("e:*", lambda m: got.append("ran"), weak=False)
    regist_function("e:*", worse)
    with pytest.raises(ExceptionGroup) as info:
        twitter("e:x")
    assert got == ["ran"]
    assert [type(e) for e in info.value.exceptions] == [ValueError, KeyError]


def test_receiver_may_send_and_loops_are_cut(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus(hop_limit=5)
    seen: list[int] = []

    def ping(message: Message) -> None:
        seen.append(message.hops)
        bus.twitter("ping:again")

    bus.subscribe("ping:*", ping)
    with caplog.at_level(logging.WARNING, logger="berrymq"):
        bus.twitter("ping:start")
    assert seen == [0, 1, 2, 3, 4]
    assert "hop limit 5" in caplog.text
    bus.close()


def test_receivers_sending_on_do_not_count_as_loop(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("a:*", lambda m: twitter("b:next"), weak=False)
    regist_function("b:*", lambda m: got.append(f"b {m.hops}"), weak=False)
    twitter("a:go")
    twitter("a:go")
    assert got == ["b 1", "b 1"]


@pytest.mark.parametrize(
    ("identifier", "entry", "exit", "expected"),
    [
        ("f", False, False, ["f:entry", "f:exit"]),
        ("f", True, True, ["f:entry", "f:exit"]),
        ("f", True, False, ["f:entry"]),
        ("f", False, True, ["f:exit"]),
        ("f:entry", False, False, ["f:entry"]),
        ("f:exit", False, False, ["f:exit"]),
        ("f:other", False, False, ["f:entry", "f:exit"]),
    ],
)
def test_auto_twitter_table(berrymq_bus: Bus, identifier: str, entry: bool, exit: bool,
                            expected: list[str]) -> None:
    got: list[str] = []
    regist_function("f:*", lambda m: got.append(m.id), weak=False)

    @auto_twitter(identifier, entry=entry, exit=exit)
    def work(x: int, y: int = 0) -> int:
        got.append("call")
        return x + y

    assert work(1, y=2) == 3
    assert got == [e for e in ["f:entry"] if e in expected] + ["call"] + [
        e for e in ["f:exit"] if e in expected
    ]


def test_auto_twitter_passes_exceptions_and_arguments(berrymq_bus: Bus) -> None:
    got: list[Message] = []
    regist_function("g:*", got.append, weak=False)

    @auto_twitter("g")
    def fail(value: int) -> None:
        raise LookupError(value)

    with pytest.raises(LookupError):
        fail(7)
    assert [(m.id, m.args) for m in got] == [("g:entry", (7,)), ("g:exit", (7,))]
    assert fail.__name__ == "fail"


def test_twitter_exception(berrymq_bus: Bus) -> None:
    got: list[Message] = []
    regist_function("err:*", got.append, weak=False)

    @twitter_exception("err:raised")
    def quiet() -> None:
        raise ZeroDivisionError("nope")

    @twitter_exception("err:raised", reraise=True)
    def loud() -> int:
        raise KeyError("k")

    @twitter_exception("err:raised")
    def fine() -> int:
        return 5

    assert quiet() is None
    with pytest.raises(KeyError):
        loud()
    assert fine() == 5
    assert [m.kwargs["exception_type"] for m in got] == ["ZeroDivisionError", "KeyError"]
    first = got[0].kwargs
    assert first["exception_message"] == "nope"
    assert "ZeroDivisionError: nope" in first["traceback"]
    assert first["function"].endswith("quiet")
    json.dumps(first)  # JSON-serialisable


def test_talk_sends_return_values_to_callback(berrymq_bus: Bus) -> None:
    results: list[Any] = []

    @following_function("*:process")
    def do_process(message: Message) -> str:
        return f"done {message.args[0]}"

    @following_function("*:process")
    def silent(message: Message) -> None:
        return None

    @following_function("*:log_result")
    def receive_result(message: Message) -> None:
        results.append((message.id, message.args[0]))

    talk("test:process", "test:log_result", "x")
    assert results == [("test:log_result", "done x")]


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
    with pytest.raises(TypeError, match="above @classmethod"):
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


def test_follower_with_slots_needs_weakref(berrymq_bus: Bus) -> None:
    class Slotted(metaclass=Follower):
        __slots__ = ()

        @following("s:*")
        def on(self, message: Message) -> None:
            pass

    with pytest.raises(TypeError, match="add '__weakref__' to its __slots__"):
        Slotted()
