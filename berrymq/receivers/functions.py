"""The ``functions`` receiver plugin: plain functions, static methods and class methods."""

from __future__ import annotations

from types import FunctionType
from typing import Any, TypeVar

from berrymq.bus import Bus, Guard, Receiver, Subscription
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier
from berrymq.registries import ReceiverRegistry

__all__ = ["FUNCTIONS", "FunctionReceivers"]

F = TypeVar("F")


class _FollowOnceBound:
    """Stands in for a classmethod in a class body until the class exists, then registers
    the bound class method and puts the classmethod back in its place."""

    def __init__(self, method: classmethod[Any, Any, Any], follow: Any) -> None:
        self.method = method
        self.follow = follow

    def __set_name__(self, owner: type, name: str) -> None:
        setattr(owner, name, self.method)
        self.follow(self.method.__get__(None, owner))


def _refuse_unbound_method(pattern: Identifier, target: object) -> None:
    """A function in a class body whose first parameter is ``cls`` or ``self`` would be
    called with the message alone: say so now, not at every delivery."""
    if not isinstance(target, FunctionType):
        return
    code = target.__code__
    owner, _, _ = target.__qualname__.rpartition(".")
    if not owner or owner.endswith("<locals>") or code.co_argcount < 2:
        return
    first = code.co_varnames[0]
    if first == "cls":
        raise TypeError(
            f"following_function({str(pattern)!r}) on {target.__qualname__}, whose first "
            "parameter is 'cls': write @following_function above @classmethod, not below"
        )
    if first == "self":
        raise TypeError(
            f"following_function({str(pattern)!r}) on the method {target.__qualname__}: "
            "for methods of instances use a Follower class with @following, or "
            "regist_method(pattern, instance.method)"
        )


class FunctionReceivers:
    """The ``functions`` receiver kind: turns functions into subscriptions that answer
    requests (a :class:`~berrymq.registries.ReceiverKind`)."""

    name = "function"
    answers = True
    refuses = False

    def follow(
        self, bus: Bus, pattern: Identifier | str, function: Receiver, guard: Guard | None = None,
        *, weak: bool = True,
    ) -> Subscription:
        """Subscribe ``function``; bound methods are held through their object."""
        return bus.subscribe(pattern, function, guard, weak=weak, kind=self)

    def decorate(
        self, bus: Bus, pattern: Identifier, target: F, guard: Guard | None, *, weak: bool = True
    ) -> F:
        """Register ``target`` and return it; a classmethod is registered once its class
        is created (put :func:`~berrymq.following_function` above ``@classmethod``)."""
        if isinstance(target, staticmethod):
            self.follow(bus, pattern, target.__func__, guard, weak=weak)
            return target
        if isinstance(target, classmethod):
            def follow(bound: Receiver) -> None:
                self.follow(bus, pattern, bound, guard, weak=weak)

            return _FollowOnceBound(target, follow)  # type: ignore[return-value]
        if not callable(target):
            raise TypeError(f"following_function({pattern}) needs a callable, got {target!r}")
        _refuse_unbound_method(pattern, target)
        self.follow(bus, pattern, target, guard, weak=weak)
        return target


#: The one ``functions`` receiver kind.
FUNCTIONS = FunctionReceivers()


@hookimpl
def berrymq_register_receivers(registry: ReceiverRegistry) -> None:
    registry.add("functions", FUNCTIONS, plugin="functions")
