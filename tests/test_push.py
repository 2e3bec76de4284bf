"""SPEC 3: the push API on an isolated default bus (the berrymq_bus fixture)."""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections.abc import Callable
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


def test_follower_instances_classmethods_and_staticmethods(berrymq_bus: Bus) -> None:
    got: list[Any] = []

    class Logger(metaclass=Follower):
        def __init__(self, name: str) -> None:
            self.name = name

        @following("*:log")
        def receive_log(self, message: Message) -> None:
            got.append((self.name, message.id))

        @following("*:big", guard_condition=lambda m: m.args[0] > 10)
        def big(self, message: Message) -> None:
            got.append((self.name, "big", message.args[0]))

        @following("cls:above")
        @classmethod
        def on_class_above(cls, message: Message) -> None:
            got.append(("class-above", cls))

        @classmethod
        @following("cls:under")
        def on_class_under(cls, message: Message) -> None:
            got.append(("class-under", cls))

        @following("st:*")
        @staticmethod
        def on_static(message: Message) -> None:
            got.append(("static", message.id))

        def not_a_receiver(self, message: Message) -> None:
            got.append("never")

    twitter("x:log")
    assert got == []  # no instance yet
    twitter("cls:above")
    twitter("cls:under")
    twitter("st:go")
    assert got == [("class-above", Logger), ("class-under", Logger), ("static", "st:go")]
    got.clear()

    first, second = Logger("first"), Logger("second")
    twitter("x:log")
    assert got == [("first", "x:log"), ("second", "x:log")]
    got.clear()
    twitter("n:big", 5)
    twitter("n:big", 50)
    assert got == [("first", "big", 50), ("second", "big", 50)]
    got.clear()
    twitter("cls:above")  # registered once, for the class, whatever the number of instances
    twitter("st:go")
    assert got == [("class-above", Logger), ("static", "st:go")]
    assert first.receive_log.__name__ == "receive_log"  # methods stay ordinary
    del first, second


def test_follower_subclass_overrides(berrymq_bus: Bus) -> None:
    got: list[str] = []

    class Base(metaclass=Follower):
        @following("a:*")
        def on_a(self, message: Message) -> None:
            got.append("base a")

        @following("b:*")
        def on_b(self, message: Message) -> None:
            got.append(f"base b for {type(self).__name__}")

    class Child(Base):
        def on_a(self, message: Message) -> None:  # overridden without @following
            got.append("child a")

        @following("c:*")
        def on_c(self, message: Message) -> None:
            got.append("child c")

    child = Child()
    for ident in ("a:x", "b:x", "c:x"):
        twitter(ident)
    assert got == ["base b for Child", "child c"]  # an inherited receiver, bound to the child
    assert child


def test_regist_method_and_cancel(berrymq_bus: Bus) -> None:
    got: list[tuple[str, str]] = []
    pattern = "p:" + "*"  # chosen at run time

    def receiver(message: Message) -> None:
        got.append(("f", message.id))

    class Plain:
        def on(self, message: Message) -> None:
            got.append(("m", message.id))

    obj = Plain()
    handle_f = regist_function(pattern, receiver)
    handle_m = regist_method(pattern, obj.on)
    twitter("p:1")
    assert got == [("f", "p:1"), ("m", "p:1")]
    handle_f.cancel()
    handle_m.cancel()
    handle_f.cancel()  # idempotent
    handle_m.cancel()
    twitter("p:2")
    assert got == [("f", "p:1"), ("m", "p:1")]
    with pytest.raises(TypeError, match="bound method"):
        regist_method("p:*", lambda m: None)
    with pytest.raises(TypeError, match="bound method"):
        regist_method("p:*", receiver)  # a plain function


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


def _raising_receivers(got: list[str]) -> None:
    """Three receivers of boom:*, the first and the third raising."""

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


@pytest.mark.parametrize("options", [{}, {"raise_errors": False}], ids=["default", "raise_errors=False"])
def test_raising_receiver_is_isolated_and_logged(berrymq_plugin_host: Any, caplog: pytest.LogCaptureFixture,
                                                 options: dict[str, Any]) -> None:
    bus = Bus(plugins=berrymq_plugin_host, **options)  # by default, or raise_errors=False: log
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
    assert "first failed" in caplog.text and "third failed" in caplog.text


def test_raise_errors_gives_exception_group_after_all_ran(berrymq_bus: Bus) -> None:
    got: list[str] = []
    _raising_receivers(got)  # berrymq_bus is a Bus(raise_errors=True)
    with pytest.raises(ExceptionGroup) as info:
        twitter("boom:x")
    assert got == ["first", "second", "third"]
    assert [type(e) for e in info.value.exceptions] == [RuntimeError, KeyError]


@pytest.mark.parametrize("workers", [0, 2])
def test_receiver_may_send_and_loops_are_cut(berrymq_plugin_host: Any, caplog: pytest.LogCaptureFixture,
                                             workers: int) -> None:
    bus = Bus(hop_limit=5, multiplicity=workers, plugins=berrymq_plugin_host)
    seen: list[tuple[str, int]] = []

    def ping(message: Message) -> None:
        seen.append((message.id, message.hops))
        twitter("loop:pong")

    def pong(message: Message) -> None:
        seen.append((message.id, message.hops))
        twitter("loop:ping")

    loop = [("loop:ping", 0), ("loop:pong", 1), ("loop:ping", 2), ("loop:pong", 3), ("loop:ping", 4)]
    with berrymq.use_bus(bus), caplog.at_level(logging.WARNING, logger="berrymq"):
        regist_function("loop:ping", ping, weak=False)
        regist_function("loop:pong", pong, weak=False)
        twitter("loop:ping")  # returns: the loop is cut
        assert berrymq.join(WAIT)
        assert seen == loop
        warnings = [r for r in caplog.records if r.name == "berrymq" and r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "loop:pong" in warnings[0].getMessage() and "hop limit 5" in warnings[0].getMessage()
        # a fresh send from outside any receiver starts again at zero hops
        seen.clear()
        twitter("loop:ping")
        assert berrymq.join(WAIT)
        assert seen == loop
    bus.close()


def test_receivers_sending_on_do_not_count_as_loop(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("a:*", lambda m: twitter("b:next"), weak=False)
    regist_function("b:*", lambda m: got.append(f"b {m.hops}"), weak=False)
    twitter("a:go")
    twitter("a:go")
    assert got == ["b 1", "b 1"]


def test_default_hop_limit_allows_reasonable_chains(berrymq_bus: Bus) -> None:
    got: list[int] = []

    @following_function("chain:*")
    def step(message: Message) -> None:
        got.append(message.args[0])
        if message.args[0] < 10:
            twitter("chain:next", message.args[0] + 1)

    twitter("chain:start", 0)
    assert got == list(range(11))


@pytest.mark.parametrize(
    ("identifier", "entry", "exit_", "expected"),
    [
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
    ],
)
def test_auto_twitter_table(berrymq_bus: Bus, identifier: str, entry: bool, exit_: bool,
                            expected: list[str]) -> None:
    got: list[str] = []
    for namespace in ("", "@ops"):  # every message sent, in either namespace
        regist_function(f"*{namespace}", lambda m: got.append(str(m.identifier)), weak=False)

    @auto_twitter(identifier, entry=entry, exit=exit_)
    def work(x: int, y: int = 0) -> int:
        got.append("call")
        return x + y

    assert work(1, y=2) == 3
    entries = [e for e in expected if e.endswith(":entry")]
    exits = [e for e in expected if e.endswith(":exit")]
    assert got == [*entries, "call", *exits]


def test_auto_twitter_passes_exceptions_and_arguments(berrymq_bus: Bus) -> None:
    got: list[Message] = []
    regist_function("g:*", got.append, weak=False)

    @auto_twitter("g")
    def fail(value: int) -> None:
        raise LookupError(value)

    with pytest.raises(LookupError) as info:
        fail(7)
    assert info.value.args == (7,)  # the function's own exception
    assert [(m.id, m.args) for m in got] == [("g:entry", (7,)), ("g:exit", (7,))]
    assert fail.__name__ == "fail"


def test_twitter_exception(berrymq_bus: Bus) -> None:
    got = capture("err:*")

    @twitter_exception("err:raised")
    def quiet(x: int) -> None:
        raise ZeroDivisionError(f"nope {x}")

    @twitter_exception("err:raised", reraise=True)
    def loud() -> int:
        raise KeyError("k")

    @twitter_exception("err:raised")
    def fine() -> int:
        return 5

    assert fine() == 5
    assert got == []  # nothing raised, nothing sent
    assert quiet(3) is None
    with pytest.raises(KeyError, match="k"):
        loud()
    assert [m.id for m in got] == ["err:raised", "err:raised"]
    assert [m.kwargs["exception_type"] for m in got] == ["ZeroDivisionError", "KeyError"]
    first = got[0].kwargs
    assert first["exception_message"] == "nope 3"
    assert "Traceback" in first["traceback"] and "ZeroDivisionError: nope 3" in first["traceback"]
    assert first["function"].endswith("quiet")
    json.dumps({"args": got[0].args, "kwargs": first})  # JSON-serialisable


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


def test_follower_with_slots_needs_weakref(berrymq_bus: Bus) -> None:
    class Slotted(metaclass=Follower):
        __slots__ = ()

        @following("s:*")
        def on(self, message: Message) -> None:
            pass

    with pytest.raises(TypeError, match="add '__weakref__' to its __slots__"):
        Slotted()
