"""The ``followers`` receiver plugin: methods of classes declared with ``metaclass=Follower``."""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from berrymq.bus import Bus, Guard, Subscription
from berrymq.default import holder
from berrymq.hookspecs import hookimpl
from berrymq.identifier import Identifier, parse
from berrymq.registries import ReceiverRegistry
from berrymq.subscription import Receiver

__all__ = ["FOLLOWERS", "Follower", "FollowerReceivers", "following"]

F = TypeVar("F")
Mark = tuple[Identifier, Guard | None]
_MARKS = "__berrymq_following__"


def following(pattern: str, guard_condition: Guard | None = None) -> Callable[[F], F]:
    """Mark a method of a :class:`Follower` class as a receiver of ``pattern``.

    Instance methods are registered for each instance when it is created, class methods
    and static methods once for the class. The class keeps the method unchanged; one that
    is not a Follower gets a warning naming it, since its marked methods are registered
    only for the Follower classes that inherit them. Outside a class it registers nothing
    (a function follows with :func:`following_function`); a subclass that overrides a
    marked method without ``@following`` takes it out of the receivers (mark the
    override too to keep it).
    """
    ident = parse(pattern)
    if guard_condition is not None and not callable(guard_condition):
        raise TypeError(f"guard_condition for {ident} must be callable")

    def mark(method: F) -> F:
        # a second @following on the same method marks the method, not the first's marker
        bare: object = method.method if isinstance(method, _Marked) else method
        target = _target(bare)
        if not callable(target):
            raise TypeError(f"@following({pattern!r}) needs a method, got {method!r}")
        marks: list[Mark] = target.__dict__.setdefault(_MARKS, [])
        marks.append((ident, guard_condition))
        return cast(F, _Marked(bare))

    return mark


class _Marked:
    """What ``@following`` puts in a class body: when the class is made it puts the method
    back (``__set_name__``) and warns if the class is no :class:`Follower`, whose marked
    methods nobody would register. A warning, not an error: Python 3.11 wraps an error of
    ``__set_name__`` in a RuntimeError. Outside a class body, or under a ``@classmethod``
    or ``@staticmethod`` written above it, it stays and calls and binds as the method."""

    __slots__ = ("__weakref__", "method")

    def __init__(self, method: object) -> None:
        self.method = method

    def __set_name__(self, owner: type, name: str) -> None:
        setattr(owner, name, self.method)
        if not isinstance(owner, Follower):
            warnings.warn(
                f"@following on {owner.__qualname__}.{name} registers nothing for "
                f"{owner.__qualname__}, which is no Follower (only for a Follower class "
                f"that inherits it): give {owner.__qualname__} metaclass=berrymq.Follower",
                stacklevel=2)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return cast(Callable[..., Any], self.method)(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self.method.__get__(instance, owner)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.method, name)


def _target(value: object) -> object:
    """The function under ``@classmethod``, ``@staticmethod`` and ``@following``."""
    while isinstance(value, classmethod | staticmethod | _Marked):
        value = value.method if isinstance(value, _Marked) else value.__func__
    return value


def _marks(value: object) -> list[Mark]:
    return getattr(_target(value), "__dict__", {}).get(_MARKS, [])  # type: ignore[no-any-return]


class FollowerReceivers:
    """The ``followers`` receiver kind: registers the marked methods of Follower classes
    and their instances (a :class:`~berrymq.registries.ReceiverKind`)."""

    name = "follower"
    answers = True
    refuses = False

    def register_class(self, bus: Bus, cls: type) -> list[Subscription]:
        """Register the class's own marked class methods and static methods."""
        return self._subscribe_all(bus, (
            (pattern, receiver, guard)
            for attr, value in vars(cls).items() if isinstance(value, (classmethod, staticmethod))
            for receiver in (getattr(cls, attr),) for pattern, guard in _marks(value)))

    def register_instance(self, bus: Bus, obj: object) -> list[Subscription]:
        """Register the marked instance methods of ``obj``, held through ``obj`` weakly."""
        if not hasattr(type(obj), "__weakref__"):
            raise TypeError(
                f"{type(obj).__qualname__} instances are held by weak reference as "
                "Followers: add '__weakref__' to its __slots__"
            )
        marked = type(obj).__berrymq_instance_marks__  # type: ignore[attr-defined]
        return self._subscribe_all(bus, (
            (pattern, method, guard)
            for attr, marks in marked for method in (getattr(obj, attr),)
            for pattern, guard in marks))

    def _subscribe_all(self, bus: Bus, wanted: Iterable[tuple[Identifier, Receiver, Guard | None]]
                       ) -> list[Subscription]:
        """Subscribe each ``(pattern, receiver, guard)`` of ``wanted``: all or, when one is
        refused, none (those made before it went on receiving, while anything kept a
        half-made instance alive, or for good for a class)."""
        subscriptions: list[Subscription] = []
        try:
            for pattern, receiver, guard in wanted:
                subscriptions.append(bus.subscribe(pattern, receiver, guard, kind=self))
        except BaseException:
            for subscription in subscriptions:
                subscription.cancel()
            raise
        return subscriptions


class Follower(type):
    """Metaclass whose instances' ``@following`` methods receive messages.

    ::

        class Logger(metaclass=Follower):
            @following("*:log")
            def receive_log(self, message): ...

    Every instance registers its bound methods on the default bus when created, by weak
    reference: a collected instance stops receiving. ``berrymq.unfollow(obj)`` stops it
    earlier. An instance is registered once: a ``__new__`` that returns an instance made
    before (a singleton) registers nothing more.
    """

    __berrymq_instance_marks__: tuple[tuple[str, list[Mark]], ...]

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        for attr, value in list(vars(cls).items()):  # @classmethod written above @following
            if isinstance(value, classmethod | staticmethod) and isinstance(value.__func__, _Marked):
                setattr(cls, attr, type(value)(cast(Callable[..., Any], value.__func__.method)))
        table: dict[str, list[Mark]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, (classmethod, staticmethod)) or not callable(value):
                    table.pop(attr, None)
                    continue
                marks = _marks(value)
                if marks:
                    table[attr] = marks
                else:
                    table.pop(attr, None)  # overridden without @following: not a receiver
        cls.__berrymq_instance_marks__ = tuple(table.items())
        if any(_marks(v) for v in vars(cls).values() if isinstance(v, (classmethod, staticmethod))):
            bus = holder.bus
            bus.plugins.receiver("followers")  # says which plugin to enable if it is off
            FOLLOWERS.register_class(bus, cls)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__call__(*args, **kwargs)
        # (what __new__ returned that is none of cls's, Python does not __init__ either)
        if cls.__berrymq_instance_marks__ and isinstance(obj, cls):
            bus = holder.bus
            bus.plugins.receiver("followers")  # says which plugin to enable if it is off
            _REGISTERED.register_once(bus, obj)
        return obj


class _Registered:
    """The Follower instances whose methods were registered, by identity, so that each is
    registered once, when it is made: a class whose ``__new__`` hands back an instance
    made before (a singleton) had its methods registered again at every call of the class,
    each message then running them once per call. Nor does such a call register again an
    instance that ``unfollow(obj)`` stopped.

    Process-wide, not per bus: an instance is registered on the bus that was the default
    when it was made, as any other; a later call of its class under another default bus
    makes nothing. Held by identity through weak references (a ``WeakSet`` would compare
    instances with their own ``__eq__`` and ``__hash__``), each entry dropped when its
    instance is collected.
    """

    __slots__ = ("_lock", "_refs")

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a __del__ run by a collection may make one too
        self._refs: dict[int, weakref.ref[object]] = {}

    def register_once(self, bus: Bus, obj: object) -> None:
        """Register the marked methods of ``obj`` on ``bus`` unless it was done before.

        Under the lock, so that two threads calling a singleton's class at once register
        it once. It is held across :meth:`Bus.subscribe <berrymq.Bus.subscribe>`, which
        runs no receiver or guard (only subscription listeners, which must not wait for
        other threads).
        """
        key = id(obj)
        with self._lock:
            known = self._refs.get(key)
            if known is not None and known() is obj:
                return
            FOLLOWERS.register_instance(bus, obj)  # refuses an obj that takes no weakref
            self._refs[key] = weakref.ref(obj, self._forget(key))

    def _forget(self, key: int) -> Callable[[weakref.ref[object]], None]:
        refs = self._refs

        def forget(ref: weakref.ref[object]) -> None:
            # No lock: a collection may run this anywhere. An entry of a newer instance
            # under the same id stays (it is another ref).
            if refs.get(key) is ref:
                refs.pop(key, None)

        return forget


_REGISTERED = _Registered()


#: The one ``followers`` receiver kind.
FOLLOWERS = FollowerReceivers()


@hookimpl
def berrymq_register_receivers(registry: ReceiverRegistry) -> None:
    registry.add("followers", FOLLOWERS, plugin="followers")
