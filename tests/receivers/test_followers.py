"""berrymq.receivers.followers (SPEC 3): ``Follower`` classes and ``regist_method``:
instance, class and static methods as receivers, subclasses, weak references."""

from __future__ import annotations

import gc
import types
from typing import Any

import pytest

from berrymq import (
    Bus,
    Follower,
    Message,
    following,
    regist_function,
    regist_method,
    twitter,
    unfollow,
)


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


def test_follower_with_slots_needs_weakref(berrymq_bus: Bus) -> None:
    class Slotted(metaclass=Follower):
        __slots__ = ()

        @following("s:*")
        def on(self, message: Message) -> None:
            pass

    with pytest.raises(TypeError, match="add '__weakref__' to its __slots__"):
        Slotted()


def test_following_in_a_class_that_is_no_follower_warns_naming_it(berrymq_bus: Bus) -> None:
    with pytest.warns(UserWarning, match=r"@following on .*Plain\.receive_log registers "
                                         r"nothing for .*Plain, which is no Follower .*give "
                                         r".*Plain metaclass=berrymq\.Follower"):
        class Plain:
            @following("*:log")
            def receive_log(self, message: Message) -> None:
                got.append(message.id)

    assert isinstance(vars(Plain)["receive_log"], types.FunctionType)  # the method, unchanged
    got: list[str] = []
    plain = Plain()
    twitter("app:log")
    assert got == []  # nothing registered for Plain itself

    class Heir(Plain, metaclass=Follower):  # ... only for a Follower that inherits it
        pass

    heir = Heir()
    twitter("app:log")
    assert got == ["app:log"]
    del plain, heir


def test_following_leaves_the_methods_of_a_follower_as_they_were(berrymq_bus: Bus) -> None:
    got: list[Any] = []

    class Twice(metaclass=Follower):  # no warning here: warnings are errors in this suite
        @following("a:*")
        @following("b:*")
        def on(self, message: Message) -> None:
            got.append(message.id)

        @following("c:*")
        @staticmethod
        def static(message: Message) -> None:
            got.append(("static", message.id))

        @classmethod
        @following("d:*")
        def under(cls, message: Message) -> None:
            got.append((cls, message.id))

    assert isinstance(vars(Twice)["on"], types.FunctionType)
    assert isinstance(vars(Twice)["static"], staticmethod)
    assert isinstance(vars(Twice)["under"].__func__, types.FunctionType)  # unwrapped too
    keep = Twice()
    for identifier in ("a:x", "b:x", "c:x", "d:x"):
        twitter(identifier)
    assert got == ["a:x", "b:x", ("static", "c:x"), (Twice, "d:x")]
    assert Twice.under.__func__.__name__ == "under"
    del keep


def test_an_instance_is_registered_once_however_often_new_returns_it(berrymq_bus: Bus) -> None:
    """A singleton's class, called again, runs ``__init__`` on the instance made before:
    its methods were registered again at each call, so one message ran them once per
    call (3 subscriptions, 3 runs), and a call after ``unfollow(obj)`` undid it. What
    ``__new__`` returns that is none of the class's is left alone, as Python leaves it
    without ``__init__`` (it was refused, naming its class as one without weak refs)."""
    got: list[int] = []

    class Service(metaclass=Follower):
        instance: Service | None = None

        def __new__(cls) -> Service:
            if cls.instance is None:
                cls.instance = super().__new__(cls)
            return cls.instance

        @following("svc:reload")
        def on_reload(self, message: Message) -> None:
            got.append(id(self))

    first, second, third = Service(), Service(), Service()
    assert first is second is third
    twitter("svc:reload")
    assert got == [id(first)]
    assert len(berrymq_bus.subscriptions()) == 1
    assert unfollow(first) == 1
    Service()  # stopped: the same instance, not made again, is not registered again
    twitter("svc:reload")
    assert got == [id(first)] and berrymq_bus.subscriptions() == []

    class Elsewhere(metaclass=Follower):
        def __new__(cls) -> Any:
            return 5

        @following("else:*")
        def on(self, message: Message) -> None:
            got.append(0)

    assert Elsewhere() == 5 and berrymq_bus.subscriptions() == []
