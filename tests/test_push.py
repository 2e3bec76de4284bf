"""SPEC 3: the push API on an isolated default bus (the berrymq_bus fixture)."""

from __future__ import annotations

import gc
import json
import logging
import threading
from typing import Any

import pytest
from helpers import WAIT, capture

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
    unfollow,
)


def test_function_receiver_gets_matching_messages_in_the_senders_thread(berrymq_bus: Bus) -> None:
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


# -- SPEC 3, black-box: the push API -------------------------------------------------------

def test_twitter_calls_every_match_in_registration_order_in_sender_thread(berrymq_bus: Bus) -> None:
    calls: list[tuple[str, int]] = []
    patterns = ["*:x", "a:*", "a:x", "*", "b:x", "a", "*:*", "a:y"]
    for index, pattern in enumerate(patterns):
        regist_function(pattern, lambda m, i=index: calls.append((patterns[i], threading.get_ident())),
                        weak=False)
    twitter("a:x")
    me = threading.get_ident()
    assert calls == [(p, me) for p in ["*:x", "a:*", "a:x", "*", "a", "*:*"]]


def test_following_function_returns_the_function_unchanged(berrymq_bus: Bus) -> None:
    def receiver(message: Message) -> str:
        return "same"

    decorated = following_function("a:b")(receiver)
    assert decorated is receiver


def test_guard_condition_black_box(berrymq_bus: Bus) -> None:
    got: list[Any] = []

    @following_function("n:*", guard_condition=lambda m: m.args[0] % 2 == 0)
    def evens(message: Message) -> None:
        got.append(message.args[0])

    seen: list[Message] = []
    regist_function("n:*", lambda m: got.append(("rt", m.args[0])), lambda m: m.args[0] > 2, weak=False)
    regist_function("n:*", seen.append, guard_condition=seen.append, weak=False)
    for n in range(5):
        twitter("n:v", n)
    assert got == [0, 2, ("rt", 3), 4, ("rt", 4)]
    assert len(seen) == 5  # the guard was called with the message, and returned None: skip


def test_following_function_on_static_and_class_methods(berrymq_bus: Bus) -> None:
    got: list[Any] = []

    class Handlers:
        @following_function("static:above")
        @staticmethod
        def s_above(message: Message) -> None:
            got.append(("s_above", message.id))

        @staticmethod
        @following_function("static:under")
        def s_under(message: Message) -> None:
            got.append(("s_under", message.id))

        @following_function("class:above")
        @classmethod
        def c_above(cls, message: Message) -> None:
            got.append(("c_above", cls, message.id))

    for ident in ("static:above", "static:under", "class:above"):
        twitter(ident)
    assert got == [("s_above", "static:above"), ("s_under", "static:under"),
                   ("c_above", Handlers, "class:above")]
    # still ordinary methods
    Handlers.s_above(Message("x:y"))
    Handlers.c_above(Message("x:y"))
    assert got[-1] == ("c_above", Handlers, "x:y")


def test_following_function_under_classmethod_is_a_clear_error(berrymq_bus: Bus) -> None:
    # @classmethod above @following_function cannot be bound to its class; the error says
    # which order works, at class definition rather than at every delivery.
    with pytest.raises(TypeError, match="write @following_function above @classmethod"):
        class Handlers:
            @classmethod
            @following_function("class:under")
            def c_under(cls, message: Message) -> None:
                pass


def test_follower_instances_classmethods_staticmethods(berrymq_bus: Bus) -> None:
    got: list[Any] = []

    class Logger(metaclass=Follower):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        @following("*:log")
        def receive_log(self, message: Message) -> None:
            got.append((self.tag, message.id))

        @following("*:big", guard_condition=lambda m: m.args[0] > 10)
        def big(self, message: Message) -> None:
            got.append((self.tag, "big", message.args[0]))

        @following("cls:above")
        @classmethod
        def on_class_above(cls, message: Message) -> None:
            got.append(("class-above", cls))

        @classmethod
        @following("cls:under")
        def on_class_under(cls, message: Message) -> None:
            got.append(("class-under", cls))

        @following("static:x")
        @staticmethod
        def on_static(message: Message) -> None:
            got.append(("static", message.id))

    twitter("x:log")
    assert got == []  # no instance yet
    twitter("cls:above")
    twitter("cls:under")
    twitter("static:x")
    assert got == [("class-above", Logger), ("class-under", Logger), ("static", "static:x")]
    got.clear()

    first, second = Logger("1"), Logger("2")
    twitter("job:log")
    assert got == [("1", "job:log"), ("2", "job:log")]
    got.clear()
    twitter("n:big", 5)
    twitter("n:big", 50)
    assert got == [("1", "big", 50), ("2", "big", 50)]
    got.clear()
    twitter("cls:above")  # registered once, for the class, whatever the number of instances
    twitter("static:x")
    assert got == [("class-above", Logger), ("static", "static:x")]
    assert first.receive_log.__name__ == "receive_log"  # methods stay ordinary
    del first, second


def test_follower_subclass_inherits_receivers(berrymq_bus: Bus) -> None:
    got: list[Any] = []

    class Base(metaclass=Follower):
        @following("a:x")
        def on_a(self, message: Message) -> None:
            got.append(("base", type(self).__name__))

    class Child(Base):
        @following("b:x")
        def on_b(self, message: Message) -> None:
            got.append(("child", "b"))

    child = Child()
    twitter("a:x")
    twitter("b:x")
    assert got == [("base", "Child"), ("child", "b")]
    del child


def test_regist_function_and_regist_method_at_run_time(berrymq_bus: Bus) -> None:
    got: list[Any] = []
    pattern = "runtime:" + "chosen"

    def receiver(message: Message) -> None:
        got.append(("f", message.id))

    class Obj:
        def method(self, message: Message) -> None:
            got.append(("m", message.id))

    obj = Obj()
    handle_f = regist_function(pattern, receiver)
    handle_m = regist_method(pattern, obj.method)
    twitter("runtime:chosen")
    assert got == [("f", "runtime:chosen"), ("m", "runtime:chosen")]
    handle_f.cancel()
    handle_m.cancel()
    twitter("runtime:chosen")
    assert len(got) == 2
    with pytest.raises(TypeError):
        regist_method("a:b", receiver)  # not a bound method


def test_weak_references_by_default(berrymq_bus: Bus) -> None:
    got: list[str] = []

    def make() -> Any:
        def closure(message: Message) -> None:
            got.append("closure")
        return closure

    regist_function("w:x", make())  # weak: nothing else keeps the closure alive

    class Obj:
        def method(self, message: Message) -> None:
            got.append("method")

    obj = Obj()
    regist_method("w:x", obj.method)

    class F(metaclass=Follower):
        @following("w:x")
        def on(self, message: Message) -> None:
            got.append("follower")

    follower = F()
    gc.collect()
    twitter("w:x")
    assert got == ["method", "follower"]
    got.clear()
    del obj, follower
    gc.collect()
    twitter("w:x")
    assert got == []


def test_weak_false_holds_strongly(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("s:x", lambda m: got.append("lambda"), weak=False)

    class Obj:
        def method(self, message: Message) -> None:
            got.append("method")

    regist_method("s:x", Obj().method, weak=False)

    def make() -> Any:
        @following_function("s:x", weak=False)
        def inner(message: Message) -> None:
            got.append("inner")
        return None

    make()
    gc.collect()
    twitter("s:x")
    assert got == ["lambda", "method", "inner"]


def test_cancel_handles(berrymq_bus: Bus) -> None:
    got: list[str] = []

    def receiver(message: Message) -> None:
        got.append(message.id)

    handle = regist_function("c:*", receiver)
    twitter("c:1")
    handle.cancel()
    handle.cancel()  # idempotent
    twitter("c:2")
    assert got == ["c:1"]
    with regist_function("c:*", receiver):
        twitter("c:3")
    twitter("c:4")
    assert got == ["c:1", "c:3"]


def test_unfollow_function_object_class(berrymq_bus: Bus) -> None:
    got: list[str] = []

    @following_function("u:*")
    def fn(message: Message) -> None:
        got.append("fn")

    regist_function("u:x", fn)

    class F(metaclass=Follower):
        @following("u:*")
        def a(self, message: Message) -> None:
            got.append("a")

        @following("u:x")
        def b(self, message: Message) -> None:
            got.append("b")

    one, two, three = F(), F(), F()
    assert unfollow(fn) == 2
    assert unfollow(one) == 2
    twitter("u:x")
    assert got == ["a", "b", "a", "b"]
    got.clear()
    assert unfollow(two.a) == 1
    twitter("u:x")
    assert got == ["b", "a", "b"]
    got.clear()
    assert unfollow(F) == 3
    twitter("u:x")
    assert got == []
    assert unfollow(fn) == 0
    del one, two, three


def _raising_receivers(got: list[str]) -> None:
    def first(message: Message) -> None:
        got.append("first")
        raise RuntimeError("first failed")

    def second(message: Message) -> None:
        got.append("second")

    def third(message: Message) -> None:
        got.append("third")
        raise KeyError("third failed")

    for fn in (first, second, third):
        regist_function("boom:*", fn, weak=False)


def test_raising_receiver_isolated_and_logged(berrymq_plugin_host: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus(plugins=berrymq_plugin_host)  # the default policy: log
    got: list[str] = []
    with berrymq.use_bus(bus), caplog.at_level(logging.ERROR, logger="berrymq"):
        _raising_receivers(got)
        twitter("boom:x")  # does not raise
    bus.close()
    assert got == ["first", "second", "third"]
    records = [r for r in caplog.records if r.name == "berrymq" and r.levelno >= logging.ERROR]
    assert len(records) == 2
    assert {type(r.exc_info[1]) for r in records if r.exc_info} == {RuntimeError, KeyError}
    assert all("boom:x" in r.getMessage() for r in records)


def test_raise_errors_bus_raises_exception_group_after_all_ran(berrymq_plugin_host: Any) -> None:
    bus = Bus(raise_errors=True, plugins=berrymq_plugin_host)
    got: list[str] = []
    with berrymq.use_bus(bus):
        _raising_receivers(got)
        with pytest.raises(ExceptionGroup) as info:
            twitter("boom:x")
    bus.close()
    assert got == ["first", "second", "third"]
    assert [type(e) for e in info.value.exceptions] == [RuntimeError, KeyError]


@pytest.mark.parametrize("workers", [0, 2])
def test_hop_limit_cuts_endless_loops(berrymq_plugin_host: Any, caplog: pytest.LogCaptureFixture,
                                      workers: int) -> None:
    bus = Bus(hop_limit=5, multiplicity=workers, plugins=berrymq_plugin_host)
    count = [0]

    def ping(message: Message) -> None:
        count[0] += 1
        twitter("loop:pong")

    def pong(message: Message) -> None:
        count[0] += 1
        twitter("loop:ping")

    with berrymq.use_bus(bus), caplog.at_level(logging.WARNING, logger="berrymq"):
        regist_function("loop:ping", ping, weak=False)
        regist_function("loop:pong", pong, weak=False)
        twitter("loop:ping")  # returns: the loop is cut
        assert berrymq.join(WAIT)
        assert 1 <= count[0] <= 6
        warnings = [r for r in caplog.records if r.name == "berrymq" and r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "loop:" in warnings[0].getMessage()
        # a fresh send from outside any receiver starts again at zero hops
        count[0] = 0
        twitter("loop:ping")
        assert berrymq.join(WAIT)
        assert 1 <= count[0] <= 6
    bus.close()


def test_default_hop_limit_allows_reasonable_chains(berrymq_bus: Bus) -> None:
    got: list[int] = []

    @following_function("chain:*")
    def step(message: Message) -> None:
        got.append(message.args[0])
        if message.args[0] < 10:
            twitter("chain:next", message.args[0] + 1)

    twitter("chain:start", 0)
    assert got == list(range(11))


AUTO_TWITTER_TABLE = [
    # identifier, entry, exit, expected sends
    ("job", False, False, ["job:entry", "job:exit"]),
    ("job", True, True, ["job:entry", "job:exit"]),
    ("job", True, False, ["job:entry"]),
    ("job", False, True, ["job:exit"]),
    ("job:run", False, False, ["job:entry", "job:exit"]),
    ("job:entry", False, False, ["job:entry"]),
    ("job:exit", False, False, ["job:exit"]),
    ("job:entry", False, True, ["job:entry"]),
    ("job:exit", True, False, ["job:exit"]),
    ("job@ops", False, False, ["job@ops:entry", "job@ops:exit"]),
]


@pytest.mark.parametrize(("ident", "entry", "exit_", "expected"), AUTO_TWITTER_TABLE)
def test_auto_twitter_table_black_box(berrymq_bus: Bus, ident: str, entry: bool, exit_: bool,
                            expected: list[str]) -> None:
    sent: list[str] = []
    order: list[str] = []
    for ns in ("", "@ops"):
        regist_function(f"*{ns}", lambda m: (sent.append(str(m.identifier) if m.namespace else m.id),
                                             order.append("msg")), weak=False)

    @auto_twitter(ident, entry=entry, exit=exit_)
    def work(a: int, b: int = 0) -> int:
        order.append("call")
        return a + b

    assert work(1, b=2) == 3
    assert sent == expected
    if expected == ["job:entry", "job:exit"]:
        assert order == ["msg", "call", "msg"]


def test_auto_twitter_passes_exceptions_through(berrymq_bus: Bus) -> None:
    got = capture("op:*")

    @auto_twitter("op")
    def fails() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError, match="k"):
        fails()
    assert got[0].id == "op:entry"
    assert fails.__name__ == "fails"


def test_twitter_exception_black_box(berrymq_bus: Bus) -> None:
    got = capture("err:*")

    @twitter_exception("err:raised")
    def fails(x: int) -> int:
        raise ValueError(f"bad value {x}")

    @twitter_exception("err:raised")
    def works(x: int) -> int:
        return x * 2

    assert works(4) == 8
    assert got == []
    assert fails(3) is None
    (message,) = got
    assert message.id == "err:raised"
    details = json.loads(json.dumps({"args": message.args, "kwargs": message.kwargs}))
    text = json.dumps(details)
    assert "ValueError" in text and "bad value 3" in text and "Traceback" in text

    @twitter_exception("err:raised", reraise=True)
    def fails_loudly() -> None:
        raise ValueError("again")

    with pytest.raises(ValueError, match="again"):
        fails_loudly()
    assert len(got) == 2
