"""Black-box checks of the berryMQ core against SPEC sections 1-6, 8 and 9.

Only the public API is used: ``import berrymq`` / ``from berrymq import ...``, the
``berrymq`` command, settings files and the public pytest fixtures (``berrymq_bus``,
``berrymq_plugin_host``). Settings are exercised in subprocesses with a scratch working
directory and an environment without ``BERRYMQ_*`` variables, so the machine's own
settings never matter.

Tests marked ``xfail(strict=True)`` pin a behaviour that contradicts the SPEC today;
they start failing (XPASS) once it is fixed, and the marker is then to be removed.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import logging
import os
import queue as stdlib_queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import berrymq
from berrymq import (
    Bus,
    Empty,
    Follower,
    Identifier,
    InvalidIdentifier,
    Message,
    Queue,
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

WAIT = 10.0  # generous deadline for anything that should happen "soon"


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# SPEC 1: identifiers
# ---------------------------------------------------------------------------------------

TABLE = [
    # written, name, action, namespace, canonical
    ("test:run", "test", "run", None, "test:run"),
    ("test:*", "test", "*", None, "test:*"),
    ("*:run", "*", "run", None, "*:run"),
    ("*:*", "*", "*", None, "*:*"),
    ("*", "*", "*", None, "*:*"),
    ("test", "test", "*", None, "test:*"),
    ("job@ops:go", "job", "go", "ops", "job@ops:go"),
]


@pytest.mark.parametrize(("text", "name", "action", "namespace", "canonical"), TABLE)
def test_identifier_table(text: str, name: str, action: str, namespace: str | None,
                          canonical: str) -> None:
    ident = Identifier(text)
    assert (ident.name, ident.action, ident.namespace) == (name, action, namespace)
    assert str(ident) == canonical
    assert ident.is_local is False
    assert Identifier(str(ident)) == ident  # the canonical text parses back to the same


def test_identifier_missing_action_means_wildcard() -> None:
    assert Identifier("test") == Identifier("test:*")
    assert Identifier("*") == Identifier("*:*")
    assert hash(Identifier("test")) == hash(Identifier("test:*"))


MATCHES = [
    ("test:run", "test:run", True),
    ("test:*", "test:run", True),
    ("test:*", "test:stop", True),
    ("*:run", "test:run", True),
    ("*:run", "test:stop", False),
    ("*:*", "x:y", True),
    ("*", "x:y", True),
    ("test", "test:anything", True),
    ("test", "other:anything", False),
    ("a:stop", "*:stop", True),
    ("a:run", "b:run", False),
    ("a:run", "a:stop", False),
    ("*:stop", "a:*", True),
    ("job@ops:go", "job@ops:go", True),
    ("job@ops:*", "*@ops:go", True),
    ("job@ops:go", "job:go", False),
    ("*", "job@ops:go", False),
    ("job@ops:go", "job@dev:go", False),
]


@pytest.mark.parametrize(("a", "b", "expected"), MATCHES)
def test_matching_is_symmetric(a: str, b: str, expected: bool) -> None:
    assert Identifier(a).matches(Identifier(b)) is expected
    assert Identifier(b).matches(Identifier(a)) is expected
    assert Identifier(a).matches(b) is expected  # a string is accepted too


def test_receiver_pattern_and_sender_wildcard(berrymq_bus: Bus) -> None:
    got: list[tuple[str, str]] = []

    @following_function("task:*")
    def task_any(message: Message) -> None:
        got.append(("task:*", message.id))

    @following_function("a:stop")
    def a_stop(message: Message) -> None:
        got.append(("a:stop", message.id))

    @following_function("b:stop")
    def b_stop(message: Message) -> None:
        got.append(("b:stop", message.id))

    @following_function("a:go")
    def a_go(message: Message) -> None:
        got.append(("a:go", message.id))

    twitter("task:run")
    assert got == [("task:*", "task:run")]
    got.clear()
    twitter("*:stop")
    assert got == [("task:*", "*:stop"), ("a:stop", "*:stop"), ("b:stop", "*:stop")]
    got.clear()
    twitter("other:thing")
    assert got == []


def test_namespaces_partition_the_bus(berrymq_bus: Bus) -> None:
    got: list[str] = []
    regist_function("job:go", lambda m: got.append("default job:go"), weak=False)
    regist_function("*", lambda m: got.append("default *"), weak=False)
    regist_function("job@ops:go", lambda m: got.append("ops job:go"), weak=False)
    regist_function("*@ops", lambda m: got.append("ops *"), weak=False)
    regist_function("*@dev:*", lambda m: got.append("dev *"), weak=False)

    twitter("job@ops:go")
    assert got == ["ops job:go", "ops *"]
    got.clear()
    twitter("job:go")
    assert got == ["default job:go", "default *"]
    got.clear()
    twitter("*@ops:go")
    assert got == ["ops job:go", "ops *"]


def test_local_names(berrymq_bus: Bus) -> None:
    assert Identifier("_secret:x").is_local
    assert Identifier("_secret").is_local
    assert Identifier("_x@ops:y").is_local
    assert not Identifier("secret:_x").is_local  # it is the *name* that counts
    got: list[str] = []
    regist_function("_secret:*", lambda m: got.append(m.id), weak=False)
    twitter("_secret:x")
    assert got == ["_secret:x"]  # local messages are delivered locally as usual
    with pytest.raises(ValueError, match="_secret"):
        berrymq.send_message("_secret:x")  # ... and refused by the inter-process API


BAD_IDENTIFIERS = [
    (123, "not a string"),
    (None, "not a string"),
    (b"a:b", "bytes"),
    ("", "empty"),
    (":run", "empty name"),
    ("a:", "empty action"),
    (":", "both empty"),
    ("a:b:c", "more than one colon"),
    ("a::b", "more than one colon"),
    (" a", "leading space"),
    ("a b", "inner space"),
    ("a:b ", "trailing space"),
    ("a\tb", "tab"),
    ("a\n", "newline"),
    ("a\x00", "NUL"),
    ("a\x7f", "DEL"),
    ("a\u00a0b", "no-break space"),
    ("te*", "partial wildcard in name"),
    ("*t", "partial wildcard in name"),
    ("t*st:run", "partial wildcard in name"),
    ("test:r*", "partial wildcard in action"),
    ("test:**", "double wildcard"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_IDENTIFIERS)
def test_invalid_identifier(bad: Any, why: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        Identifier(bad)
    assert isinstance(info.value, ValueError)
    assert repr(bad) in str(info.value), f"the error must name the text: {info.value}"


@pytest.mark.parametrize(
    "call",
    [
        lambda: twitter("te*:run"),
        lambda: twitter(":run", 1, x=2),
        lambda: following_function("a:b:c"),
        lambda: regist_function("a:", print, weak=False),
        lambda: regist_method("", object().__str__),
        lambda: Queue("a b"),
        lambda: Queue("x*", shared=True),
        lambda: talk("ok:x", "bad:"),
        lambda: talk("bad:", "ok:x"),
        lambda: auto_twitter("te*"),
        lambda: twitter_exception("a:b:c"),
        lambda: following("*x"),
        lambda: berrymq.ask("a:b:c"),
        lambda: Identifier("a:b").matches("a:b:c"),
    ],
    ids=["twitter", "twitter-args", "following_function", "regist_function", "regist_method",
         "Queue", "Queue-shared", "talk-callback", "talk", "auto_twitter",
         "twitter_exception", "following", "ask", "matches"],
)
def test_invalid_identifier_raised_at_the_call(berrymq_bus: Bus, call: Any) -> None:
    with pytest.raises(InvalidIdentifier):
        call()


def test_invalid_identifier_registers_nothing(berrymq_bus: Bus) -> None:
    got: list[Message] = []
    with pytest.raises(InvalidIdentifier):
        regist_function("bad:", got.append, weak=False)
    twitter("bad:x")
    twitter("*")
    assert got == []


# ---------------------------------------------------------------------------------------
# SPEC 2: messages
# ---------------------------------------------------------------------------------------


def _capture(pattern: str) -> list[Message]:
    got: list[Message] = []
    regist_function(pattern, got.append, weak=False)
    return got


def test_message_attributes(berrymq_bus: Bus) -> None:
    got = _capture("*")
    twitter("job:done", 1, [2], user="ada", n=3)
    (message,) = got
    assert message.id == "job:done"
    assert message.name == "job"
    assert message.action == "done"
    assert message.namespace is None
    assert message.args == (1, [2]) and type(message.args) is tuple
    assert message.kwargs == {"user": "ada", "n": 3} and type(message.kwargs) is dict
    assert message.user == "ada" and message.n == 3
    with pytest.raises(AttributeError, match="nope"):
        _ = message.nope


def test_message_id_as_sent_and_namespace(berrymq_bus: Bus) -> None:
    got = _capture("*@ops")
    twitter("job@ops:go")
    twitter("job@ops")
    assert [(m.id, m.name, m.action, m.namespace) for m in got] == [
        ("job:go", "job", "go", "ops"),
        ("job:*", "job", "*", "ops"),
    ]


def test_message_attributes_are_read_only(berrymq_bus: Bus) -> None:
    got = _capture("a:b")
    twitter("a:b", 1, k=2)
    message = got[0]
    for attr in ("id", "name", "action", "namespace", "args", "kwargs"):
        with pytest.raises(AttributeError):
            setattr(message, attr, "x")


def test_message_apply(berrymq_bus: Bus) -> None:
    got = _capture("a:b")
    twitter("a:b", 99, x=1, y=2)

    def add(x: int, y: int) -> int:
        return x * 10 + y

    assert got[0].apply(add) == 12
    assert got[0].apply(lambda **kw: kw) == {"x": 1, "y": 2}


def test_message_kwargs_named_like_tuple_methods(berrymq_bus: Bus) -> None:
    got = _capture("a:b")
    twitter("a:b", count=3, index=4)
    assert got[0].count == 3
    assert got[0].index == 4


# ---------------------------------------------------------------------------------------
# SPEC 3: push API
# ---------------------------------------------------------------------------------------


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


def test_guard_condition(berrymq_bus: Bus) -> None:
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
def test_auto_twitter_table(berrymq_bus: Bus, ident: str, entry: bool, exit_: bool,
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
    got = _capture("op:*")

    @auto_twitter("op")
    def fails() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError, match="k"):
        fails()
    assert got[0].id == "op:entry"
    assert fails.__name__ == "fails"


def test_twitter_exception(berrymq_bus: Bus) -> None:
    got = _capture("err:*")

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


# ---------------------------------------------------------------------------------------
# SPEC 4: pull API
# ---------------------------------------------------------------------------------------


def test_empty_is_stdlib_queue_empty() -> None:
    assert berrymq.Empty is stdlib_queue.Empty


def test_queue_standalone_copies_fifo_and_only_after_creation(berrymq_bus: Bus) -> None:
    twitter("task:before")
    q1 = Queue("task:*")
    q2 = Queue("task:*")
    other = Queue("other:*")
    for n in range(5):
        twitter("task:run", n)
    assert [q1.get_nowait().args[0] for _ in range(5)] == list(range(5))
    assert [q2.get(timeout=1).args[0] for _ in range(5)] == list(range(5))
    assert other.empty()
    with pytest.raises(Empty):
        q1.get_nowait()


def test_queue_get_nowait_and_block_false(berrymq_bus: Bus) -> None:
    q = Queue("t:*")
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(Empty):
        q.get(False)
    twitter("t:x", 1)
    assert q.get(block=False).args == (1,)


def test_queue_get_timeout(berrymq_bus: Bus) -> None:
    q = Queue("t:*")
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - start >= 0.04


def test_queue_get_blocks_until_a_message_arrives(berrymq_bus: Bus) -> None:
    q = Queue("t:*")
    waiting = threading.Event()
    result: list[Message] = []

    def consumer() -> None:
        waiting.set()
        result.append(q.get())  # block=True, no timeout

    thread = threading.Thread(target=consumer)
    thread.start()
    assert waiting.wait(WAIT)
    twitter("t:go", "payload")
    thread.join(WAIT)
    assert not thread.is_alive()
    assert result[0].args == ("payload",)


def test_queue_qsize_empty_full(berrymq_bus: Bus) -> None:
    q = Queue("t:*", maxsize=2)
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    twitter("t:1")
    assert (q.qsize(), q.empty(), q.full()) == (1, False, False)
    twitter("t:2")
    assert (q.qsize(), q.empty(), q.full()) == (2, False, True)
    q.get()
    assert (q.qsize(), q.empty(), q.full()) == (1, False, False)
    unbounded = Queue("u:*")
    for _ in range(100):
        twitter("u:x")
    assert unbounded.qsize() == 100 and not unbounded.full()


def test_full_queue_refuses_with_clear_error_never_drops(berrymq_plugin_host: Any) -> None:
    # Even on a bus that only logs receiver errors, a refused message is reported to the
    # sender: nothing is dropped silently.
    bus = Bus(plugins=berrymq_plugin_host)
    with berrymq.use_bus(bus):
        q = Queue("full:*", maxsize=2, on_full="refuse")
        twitter("full:1")
        twitter("full:2")
        with pytest.raises(stdlib_queue.Full) as info:
            twitter("full:3")
        assert isinstance(info.value, berrymq.QueueFull)
        assert "full:" in str(info.value)
        assert [q.get_nowait().id for _ in range(2)] == ["full:1", "full:2"]
        twitter("full:4")  # room again
        assert q.get_nowait().id == "full:4"
    bus.close()


def test_full_queue_default_policy_blocks_for_a_bounded_time(berrymq_bus: Bus) -> None:
    q = Queue("full:*", maxsize=1, put_timeout=0.1)
    twitter("full:1")
    start = time.monotonic()
    with pytest.raises(berrymq.QueueFull):
        twitter("full:2")
    assert time.monotonic() - start < WAIT
    assert q.qsize() == 1


def test_full_queue_blocked_sender_proceeds_when_room_frees(berrymq_bus: Bus) -> None:
    q = Queue("full:*", maxsize=1, put_timeout=WAIT)
    twitter("full:1")
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            twitter("full:2")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sender)
    thread.start()
    assert q.get(timeout=WAIT).id == "full:1"
    assert q.get(timeout=WAIT).id == "full:2"
    thread.join(WAIT)
    assert errors == []


def test_shared_queues_compete(berrymq_bus: Bus) -> None:
    a = Queue("job:*", shared=True)
    b = Queue("job:*", shared=True)
    copy = Queue("job:*")  # a standalone one still gets its own copy
    for n in range(6):
        twitter("job:n", n)
    taken = [a.get_nowait().args[0], b.get_nowait().args[0], a.get_nowait().args[0],
             b.get_nowait().args[0], b.get_nowait().args[0], a.get_nowait().args[0]]
    assert taken == list(range(6))
    with pytest.raises(Empty):
        a.get_nowait()
    with pytest.raises(Empty):
        b.get_nowait()
    assert copy.qsize() == 6


def test_shared_queue_exactly_once_across_threads(berrymq_bus: Bus) -> None:
    consumers = [Queue("work:*", shared=True) for _ in range(3)]
    total = 600
    results: list[list[int]] = [[] for _ in consumers]

    def consume(index: int) -> None:
        q = consumers[index]
        while True:
            try:
                message = q.get(timeout=WAIT)
            except Empty:
                return
            if message.action == "stop":
                return
            results[index].append(message.args[0])

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for n in range(total):
        twitter("work:item", n)
    for _ in threads:
        twitter("work:stop")
    for thread in threads:
        thread.join(WAIT * 2)
    assert not any(t.is_alive() for t in threads)
    everything = sorted(n for r in results for n in r)
    assert everything == list(range(total))


def test_queue_close_with_and_iteration(berrymq_bus: Bus) -> None:
    q = Queue("c:*")
    twitter("c:1")
    q.close()
    twitter("c:2")  # not stored: closed
    assert q.get_nowait().id == "c:1"
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=WAIT)  # closed and drained: does not wait

    with Queue("w:*") as w:
        twitter("w:1")
    twitter("w:2")
    assert [m.id for m in w] == ["w:1"]  # iteration ends once closed and drained


def test_queue_iteration_yields_messages_as_they_come(berrymq_bus: Bus) -> None:
    q = Queue("it:*")

    def producer() -> None:
        for n in range(3):
            twitter("it:n", n)
        q.close()

    thread = threading.Thread(target=producer)
    thread.start()
    assert [m.args[0] for m in q] == [0, 1, 2]
    thread.join(WAIT)


def test_closing_one_shared_queue_keeps_the_others(berrymq_bus: Bus) -> None:
    a = Queue("s:*", shared=True)
    b = Queue("s:*", shared=True)
    a.close()
    twitter("s:x")
    assert b.get(timeout=WAIT).id == "s:x"


def test_close_wakes_a_blocked_getter(berrymq_bus: Bus) -> None:
    q = Queue("b:*")
    waiting = threading.Event()
    outcome: list[Any] = []

    def getter() -> None:
        waiting.set()
        try:
            outcome.append(q.get())
        except Empty as exc:
            outcome.append(exc)

    thread = threading.Thread(target=getter)
    thread.start()
    assert waiting.wait(WAIT)
    q.close()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Empty)


def test_closed_shared_queue_takes_nothing_more(berrymq_bus: Bus) -> None:
    a = Queue("s:*", shared=True)
    b = Queue("s:*", shared=True)
    a.close()
    twitter("s:1")
    with pytest.raises(Empty):
        a.get_nowait()
    assert b.get_nowait().id == "s:1"


def test_queue_maxsize_must_be_valid(berrymq_bus: Bus) -> None:
    with pytest.raises((ValueError, TypeError)):
        Queue("a:b", maxsize=-1)


# ---------------------------------------------------------------------------------------
# SPEC 5: talk and ask, locally
# ---------------------------------------------------------------------------------------


def test_talk_sends_non_none_results_to_callback(berrymq_bus: Bus) -> None:
    @following_function("*:process")
    def doubles(message: Message) -> int:
        return message.args[0] * 2

    @following_function("*:process")
    def silent(message: Message) -> None:
        return None

    @following_function("*:process")
    def zero(message: Message) -> int:
        return 0  # not None: sent

    results = _capture("test:log_result")
    talk("test:process", "test:log_result", 21)
    assert [m.args for m in results] == [(42,), (0,)]


def test_ask_returns_replies_in_order(berrymq_bus: Bus) -> None:
    assert berrymq.ask("nobody:home") == []

    @following_function("price:quote")
    def quote(message: Message) -> float:
        return 9.5 * message.args[0]

    @following_function("price:*")
    def fails(message: Message) -> float:
        raise ArithmeticError("no price")

    @following_function("*:quote")
    def other(message: Message) -> str:
        return f"{message.currency}"

    replies = berrymq.ask("price:quote", 2, currency="EUR", timeout=WAIT)
    assert replies[0] == 19.0
    assert isinstance(replies[1], berrymq.ReplyError)
    assert "no price" in str(replies[1])
    assert replies[2] == "EUR"


# ---------------------------------------------------------------------------------------
# SPEC 6: concurrency
# ---------------------------------------------------------------------------------------


def test_set_multiplicity_returns_at_once_and_overlaps(berrymq_bus: Bus) -> None:
    berrymq.set_multiplicity(2)
    release = threading.Event()
    barrier = threading.Barrier(2, timeout=WAIT)
    threads: list[int] = []
    done: list[str] = []

    def slow(message: Message) -> None:
        threads.append(threading.get_ident())
        barrier.wait()  # only passes if two receivers run at the same time
        release.wait(WAIT)
        done.append(message.id)

    regist_function("slow:*", slow, weak=False)
    twitter("slow:a")
    twitter("slow:b")  # returns although both receivers are still blocked
    assert done == []
    release.set()
    assert berrymq.join(WAIT)
    assert sorted(done) == ["slow:a", "slow:b"]
    assert threading.get_ident() not in threads


def test_set_multiplicity_zero_and_negative(berrymq_bus: Bus) -> None:
    berrymq.set_multiplicity(3)
    berrymq.set_multiplicity(0)
    where: list[int] = []
    regist_function("z:*", lambda m: where.append(threading.get_ident()), weak=False)
    twitter("z:x")
    assert where == [threading.get_ident()]  # back in the sender's thread, synchronously
    with pytest.raises(ValueError):
        berrymq.set_multiplicity(-1)
    twitter("z:x")
    assert len(where) == 2  # the failed call changed nothing


def test_set_multiplicity_change_loses_nothing(berrymq_bus: Bus) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def receiver(message: Message) -> None:
        with lock:
            got.append(message.args[0])

    regist_function("m:*", receiver, weak=False)
    berrymq.set_multiplicity(2)
    for n in range(200):
        twitter("m:n", n)
    berrymq.set_multiplicity(0)  # everything handed to the old pool is delivered
    assert sorted(got) == list(range(200))


def test_set_multiplicity_while_sending_loses_nothing(berrymq_bus: Bus) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def receiver(message: Message) -> None:
        with lock:
            got.append(message.args[0])

    regist_function("mx:*", receiver, weak=False)
    total = 2000
    started = threading.Event()
    failures: list[BaseException] = []

    def sender() -> None:
        started.set()
        try:
            for n in range(total):
                twitter("mx:n", n)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=sender)
    thread.start()
    assert started.wait(WAIT)
    for size in (2, 0, 1, 3, 0, 2, 0):
        berrymq.set_multiplicity(size)
    thread.join(WAIT * 2)
    assert not thread.is_alive()
    assert berrymq.join(WAIT)
    assert failures == []
    assert sorted(got) == list(range(total))


def test_async_receiver_and_awaitable_queue(berrymq_bus: Bus) -> None:
    import asyncio

    async def main() -> list[Any]:
        got: list[Any] = []
        done = asyncio.Event()

        @following_function("aio:*")
        async def receiver(message: Message) -> None:
            await asyncio.sleep(0)
            got.append(message.args[0])
            done.set()

        q = Queue("aio:*")
        twitter("aio:x", 7)
        message = await q.get_async(timeout=WAIT)
        await asyncio.wait_for(done.wait(), WAIT)
        return [got, message.args]

    assert asyncio.run(main()) == [[7], (7,)]


@pytest.mark.parametrize("workers", [0, 2])
def test_thread_safety_under_concurrent_use(berrymq_bus: Bus, workers: int) -> None:
    berrymq.set_multiplicity(workers)
    counted: list[int] = []
    lock = threading.Lock()

    def steady(message: Message) -> None:
        with lock:
            counted.append(message.args[0])

    regist_function("load:*", steady, weak=False)
    senders, per_sender = 4, 300
    failures: list[BaseException] = []
    start = threading.Barrier(senders + 2, timeout=WAIT)

    def send(index: int) -> None:
        try:
            start.wait()
            for n in range(per_sender):
                twitter("load:item", index * per_sender + n)
        except BaseException as exc:
            failures.append(exc)

    def churn() -> None:
        try:
            start.wait()
            for n in range(150):
                def extra(message: Message) -> None:
                    pass
                handle = regist_function(f"load:{n % 7}", extra, weak=False)
                queue = Queue("load:*")
                regist_function("load:*", extra, weak=False)
                handle.cancel()
                queue.close()
                assert unfollow(extra) == 1
        except BaseException as exc:
            failures.append(exc)

    def register() -> None:
        try:
            start.wait()
            for _ in range(150):
                def temp(message: Message) -> None:
                    pass
                regist_function("*", temp, weak=True)
                del temp
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    threads += [threading.Thread(target=churn), threading.Thread(target=register)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not any(t.is_alive() for t in threads)
    assert berrymq.join(WAIT)
    assert failures == []
    assert sorted(counted) == list(range(senders * per_sender))


# ---------------------------------------------------------------------------------------
# SPEC 8 and 9: settings files, plugins, the command line (in subprocesses)
# ---------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERRYMQ_")}
    env["PYTHONWARNINGS"] = "error"
    env.update(extra)
    return env


def _python(cwd: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=60, check=False)


# Prints, as JSON, what the settings did to the default bus: observed through behaviour.
PROBE = """
    import json, threading, logging
    import berrymq
    from berrymq import regist_function, twitter
    out = {}
    def boom(message):
        raise RuntimeError("boom")
    regist_function("probe:boom", boom, weak=False)
    try:
        twitter("probe:boom")
        out["raises"] = False
    except ExceptionGroup:
        out["raises"] = True
    count = [0]
    def loop(message):
        count[0] += 1
        twitter("probe:loop")
    regist_function("probe:loop", loop, weak=False)
    logging.disable(logging.CRITICAL)
    twitter("probe:loop")
    out["hops"] = count[0]
    where = []
    done = threading.Event()
    regist_function("probe:thread", lambda m: (where.append(threading.get_ident()), done.set()),
                    weak=False)
    twitter("probe:thread")
    done.wait(10)
    out["pool"] = where != [threading.get_ident()]
    print(json.dumps(out))
"""


def _probe(cwd: Path, **env: str) -> dict[str, Any]:
    done = _python(cwd, PROBE, **env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_no_settings_file_defaults(tmp_path: Path) -> None:
    result = _probe(tmp_path)
    assert result["raises"] is False
    assert result["pool"] is False
    assert 2 <= result["hops"] <= 1000


def test_settings_berrymq_toml(tmp_path: Path) -> None:
    (tmp_path / "berrymq.toml").write_text("[berrymq]\nraise_errors = true\nhop_limit = 4\n")
    result = _probe(tmp_path)
    assert result["raises"] is True
    assert result["pool"] is False
    assert 1 <= result["hops"] <= 5
    (tmp_path / "berrymq.toml").write_text("[berrymq]\nmultiplicity = 2\n")
    result = _probe(tmp_path)
    assert result["pool"] is True


def test_settings_discovery_order(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\nversion = "1"\n')
    assert _probe(tmp_path)["raises"] is False  # no [tool.berrymq]: not a settings file
    pyproject.write_text('[project]\nname = "x"\nversion = "1"\n\n[tool.berrymq]\nraise_errors = true\n')
    assert _probe(tmp_path)["raises"] is True
    (tmp_path / "berrymq.toml").write_text("[berrymq]\nraise_errors = false\n")
    assert _probe(tmp_path)["raises"] is False  # berrymq.toml comes before pyproject.toml
    elsewhere = tmp_path / "conf" / "mine.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text("[berrymq]\nraise_errors = true\n")
    assert _probe(tmp_path, BERRYMQ_CONFIG=str(elsewhere))["raises"] is True  # env var first


def test_settings_file_errors_name_file_and_line(tmp_path: Path) -> None:
    cases = [
        ('[berrymq]\nplugins = ["local"]\nhop_limit = = 3\n', 3, "TOML"),
        ('[berrymq]\nraise_errors = true\n\nbogus = 1\n', 4, "bogus"),
        ('[berrymq]\n\nplugins = ["local", "no-such-plugin"]\n', 3, "no-such-plugin"),
        ('[berrymq]\ndisable = ["no-such-plugin"]\n', 2, "no-such-plugin"),
        ('[berrymq]\nraise_errors = "yes"\n', 2, "raise_errors"),
        ('[berrymq]\n\n[berrymq.no-such-plugin]\nx = 1\n', 3, "no-such-plugin"),
        ('[berrymq]\n\n[berrymq.local]\nbogus_key = 1\n', 4, "bogus_key"),
    ]
    for text, line, word in cases:
        path = tmp_path / "berrymq.toml"
        path.write_text(text)
        done = _python(tmp_path, 'import berrymq\nberrymq.twitter("a:b")\n')
        assert done.returncode != 0, text
        last = done.stderr.strip().splitlines()[-1]
        assert "SettingsError" in last, done.stderr
        assert f"{path}:{line}" in last, (text, last)
        assert word in last, (text, last)


def test_settings_error_in_pyproject_and_config_env(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.berrymq]\nraise_errors = true\nbad_key = 2\n')
    done = _python(tmp_path, 'import berrymq\nberrymq.twitter("a:b")\n')
    assert "SettingsError" in done.stderr and f"{tmp_path / 'pyproject.toml'}:3" in done.stderr
    assert "bad_key" in done.stderr
    done = _python(tmp_path, 'import berrymq\nberrymq.twitter("a:b")\n',
                   BERRYMQ_CONFIG=str(tmp_path / "missing.toml"))
    assert done.returncode != 0 and "missing.toml" in done.stderr


def test_plugins_allow_list_and_disable(tmp_path: Path) -> None:
    code = """
        import berrymq
        from berrymq import PluginNotAvailable
        results = []
        try:
            q = berrymq.Queue("a:*")
            berrymq.twitter("a:x")
            results.append("queue ok" if q.get_nowait().id == "a:x" else "queue wrong")
        except PluginNotAvailable as exc:
            results.append(f"queue unavailable: {exc}")
        try:
            berrymq.init_connection("tcp://127.0.0.1:0")
            results.append("tcp ok")
        except PluginNotAvailable as exc:
            results.append(f"tcp unavailable: {exc}")
        berrymq.get_bus().close()
        print("|".join(results))
    """
    settings = tmp_path / "berrymq.toml"
    settings.write_text('[berrymq]\nplugins = ["local"]\n')
    done = _python(tmp_path, code)
    assert done.returncode == 0, done.stderr
    queue_result, tcp_result = done.stdout.strip().split("|")
    assert queue_result == "queue ok"  # the core receivers make up the local API
    assert tcp_result.startswith("tcp unavailable") and "jsonrpc-tcp" in tcp_result

    settings.write_text('[berrymq]\ndisable = ["queues"]\n')
    done = _python(tmp_path, code)
    assert done.returncode == 0, done.stderr
    queue_result, tcp_result = done.stdout.strip().split("|")
    assert queue_result.startswith("queue unavailable") and "queues" in queue_result
    if _installed("berrymq-jsonrpc-tcp"):
        assert tcp_result == "tcp ok"


def test_plugins_command(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "berrymq", "plugins"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    by_name = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    for name in ("local", "functions", "followers", "queues"):
        row = by_name[name]
        assert row[1] == "berrymq" and row[2] == berrymq.__version__ and row[3] == "yes", row

    (tmp_path / "berrymq.toml").write_text('[berrymq]\ndisable = ["local"]\n')
    done = subprocess.run([sys.executable, "-m", "berrymq", "plugins"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    by_name = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert by_name["local"][3] == "no"
    assert by_name["queues"][3] == "yes"
    assert str(tmp_path / "berrymq.toml") in done.stdout

    (tmp_path / "berrymq.toml").write_text('[berrymq]\nplugins = [\n')
    done = subprocess.run([sys.executable, "-m", "berrymq", "plugins"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert str(tmp_path / "berrymq.toml") in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(not _installed("berrymq-jsonrpc-tcp"), reason="berrymq-jsonrpc-tcp not installed")
def test_per_plugin_table(tmp_path: Path) -> None:
    (tmp_path / "berrymq.toml").write_text('[berrymq]\n\n[berrymq.jsonrpc-tcp]\nhost = "127.0.0.1"\n')
    done = _python(tmp_path, """
        import berrymq
        address = berrymq.init_connection("tcp://127.0.0.1:0")
        print(address)
        berrymq.get_bus().close()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("tcp://127.0.0.1:")
    (tmp_path / "berrymq.toml").write_text('[berrymq]\n\n[berrymq.jsonrpc-tcp]\nhots = "127.0.0.1"\n')
    done = _python(tmp_path, 'import berrymq\nberrymq.twitter("a:b")\n')
    assert done.returncode != 0
    assert f"{tmp_path / 'berrymq.toml'}:4" in done.stderr and "hots" in done.stderr
